"""Can the jail be applied on this host? Starts one real jailed child (the way every invocation's child
starts) and reports why not; the API asks this at start so that it can refuse work instead of running
functions with less isolation than promised."""

from __future__ import annotations

import tempfile
from pathlib import Path

from core.models import FunctionConfig

from .mode import SandboxUnavailable, insecure
from .pool import SandboxPool, get_pool
from .runtime import RuntimeUnavailable, node_source, node_version


def jail_problem(root: Path | None = None) -> str | None:
    """None if a jailed child starts and imports a trivial handler here; else why it cannot (insecure mode
    never has a problem: it promises no jail)."""
    if insecure():
        return None
    with tempfile.TemporaryDirectory(prefix="cloudfn-probe-") as tmp:
        code = Path(tmp) / "code"
        code.mkdir()
        (code / "main.py").write_text("def handler(event, context):\n    return None\n")
        pool = SandboxPool(root or get_pool().root)
        try:
            failure = pool.check_handler(key="platform/jail-probe", code_dir=code, handler="main.handler",
                                         config=FunctionConfig(timeout_s=30, memory_mb=128))
        except SandboxUnavailable as exc:
            return str(exc)
        except OSError as exc:
            return f"could not start a jailed child: {exc}"
        finally:
            pool.close()
    if failure is not None:
        return f"{failure.get('type')}: {failure.get('message')}"
    return None


def node_problem() -> str | None:
    """None if Node.js 20 or later is installed for `runtime: nodejs20` functions; else why not."""
    try:
        node_version(node_source())
    except RuntimeUnavailable as exc:
        return str(exc)
    return None
