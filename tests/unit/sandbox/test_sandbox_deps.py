"""Vendored requirements (cluster.deps) in the sandbox: importable from <code>/.deps, shadowed by the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.deps import vendor_requirements
from cluster.sandbox import SandboxPool
from core.bundles import Bundle, unpack
from core.models import TaskStatus

from ..test_deps import LIMITS, make_bundle, pypi_unreachable
from .conftest import invoke

SIX_HANDLER = "import six\n\ndef handler(event, context):\n    return six.__version__\n"


@pytest.fixture(scope="module")
def vendored() -> Bundle:
    reason = pypi_unreachable()
    if reason:
        pytest.skip(reason)
    src = make_bundle("six==1.16.0\nmsgpack==1.2.4\n", {
        "main.py": SIX_HANDLER,
        "packed.py": "import msgpack, msgpack._cmsgpack\n\ndef handler(event, context):\n"
                     "    return [msgpack.unpackb(msgpack.packb(event)), msgpack.Packer.__module__]\n",
        "shadow.py": "import msgpack\n\ndef handler(event, context):\n    return msgpack.WHO\n",
    })
    return vendor_requirements(src, "main.handler", LIMITS)


def _code(bundle: Bundle, base: Path, extra: dict[str, str] | None = None) -> Path:
    code = base / "code"
    unpack(bundle.data, code)
    for name, text in (extra or {}).items():
        (code / name).write_text(text)
    return code


def test_vendored_pure_python_dependency(pool: SandboxPool, tmp_path: Path, vendored: Bundle) -> None:
    out = invoke(pool, _code(vendored, tmp_path))
    assert (out.status, out.output) == (TaskStatus.SUCCEEDED, "1.16.0"), out.error


def test_vendored_c_extension(pool: SandboxPool, tmp_path: Path, vendored: Bundle) -> None:
    out = invoke(pool, _code(vendored, tmp_path), {"a": [1, 2]}, handler="packed.handler")
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert out.output == [{"a": [1, 2]}, "msgpack._cmsgpack"]


def test_bundle_module_shadows_a_dependency(pool: SandboxPool, tmp_path: Path, vendored: Bundle) -> None:
    # A code-dir msgpack.py must win over .deps/msgpack/: the bundle's modules come first on sys.path.
    code = _code(vendored, tmp_path, {"msgpack.py": "WHO = 'the bundle'\n"})
    out = invoke(pool, code, handler="shadow.handler")
    assert (out.status, out.output) == (TaskStatus.SUCCEEDED, "the bundle"), out.error
