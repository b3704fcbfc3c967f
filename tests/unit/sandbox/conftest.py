"""Fixtures for sandbox tests: a pool rooted in a fresh directory and helpers to write handler code."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.sandbox import InvocationContext, SandboxPool
from core.models import ExecutionOutcome, FunctionConfig

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (uid switch, namespaces, cgroups)")


def sandbox_root() -> Path:
    """A fresh pool root. Jailed children (their own uids) must be able to traverse every directory above
    it, so it sits directly in /tmp rather than in pytest's 0700 tmp_path."""
    return Path(f"/tmp/cloudfn-sandbox-test-{os.getpid()}-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    root = sandbox_root()
    p = SandboxPool(root, idle_ttl_s=600.0, max_warm=16)
    yield p
    p.close()
    shutil.rmtree(root, ignore_errors=True)


def uid_processes(uid: int) -> list[int]:
    """Host pids of the processes running as `uid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def write_code(base: Path, source: str, name: str = "main.py") -> Path:
    """A code dir holding `name` with the dedented source."""
    code = base / "code"
    (code / name).parent.mkdir(parents=True, exist_ok=True)
    (code / name).write_text(textwrap.dedent(source))
    return code


def make_context(request_id: str | None = None, timeout_s: float = 10.0, name: str = "fn") -> InvocationContext:
    """A context as the executor would build it."""
    rid = request_id or uuid.uuid4().hex
    return InvocationContext(
        function_name=name, function_version="3", aws_request_id=rid, memory_limit_in_mb=128,
        invoked_function_arn=f"arn:cloudfn:default:function:{name}:3", log_group_name=f"/cloudfn/{name}",
        log_stream_name="2026/01/01/[3]abc", deadline_epoch=time.time() + timeout_s,
    )


def invoke(pool: SandboxPool, code: Path, event: Any = None, *, key: str | None = None,
           handler: str = "main.handler", config: FunctionConfig | None = None,
           context: InvocationContext | None = None) -> ExecutionOutcome:
    """Invoke with sensible defaults (a fresh key unless given)."""
    cfg = config or FunctionConfig(timeout_s=10, memory_mb=128)
    return pool.invoke(key=key or f"t/{uuid.uuid4().hex}", code_dir=code, handler=handler, config=cfg,
                       event_json=json.dumps(event).encode(), context=context or make_context(timeout_s=cfg.timeout_s))
