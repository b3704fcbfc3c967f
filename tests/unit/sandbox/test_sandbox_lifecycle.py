"""Warm reuse, limits that end an invocation, crashes, cancellation, reaping and the activation gate."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from cluster.sandbox import SandboxPool
from core.models import FunctionConfig, TaskStatus

from .conftest import invoke, sandbox_root, write_code

COUNTER = """
import os
TOKEN = os.urandom(8).hex()  # tells children apart: in the jail every handler is pid 2
calls = 0
def handler(event, context):
    global calls
    calls += 1
    return {"calls": calls, "child": TOKEN}
"""


def test_warm_reuse_keeps_module_state(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, COUNTER)
    key = f"t/warm/{uuid.uuid4().hex}"
    first, second = invoke(pool, code, {}, key=key), invoke(pool, code, {}, key=key)
    assert first.cold_start and not second.cold_start
    assert (first.output["calls"], second.output["calls"]) == (1, 2)
    assert first.output["child"] == second.output["child"] and "init_ms" not in second.extra


def test_no_reuse_across_keys(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, COUNTER)
    a, b = invoke(pool, code, {}, key="t/a/" + uuid.uuid4().hex), invoke(pool, code, {}, key="t/b/" + uuid.uuid4().hex)
    assert a.cold_start and b.cold_start
    assert a.output["calls"] == b.output["calls"] == 1 and a.output["child"] != b.output["child"]


def test_timeout_kills_and_next_call_is_cold(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "import time\ndef handler(event, context):\n    time.sleep(event)\n    return event\n")
    key = f"t/timeout/{uuid.uuid4().hex}"
    cfg = FunctionConfig(timeout_s=0.5)
    assert invoke(pool, code, 0, key=key, config=cfg).status == TaskStatus.SUCCEEDED
    out = invoke(pool, code, 30, key=key, config=cfg)
    assert out.duration_ms < 15_000  # cut at the 0.5 s timeout, far before the 30 s sleep would end
    assert out.status == TaskStatus.TIMED_OUT and out.error is not None and out.error["type"] == "TimeoutError"
    after = invoke(pool, code, 0, key=key, config=cfg)
    assert after.status == TaskStatus.SUCCEEDED and after.cold_start


def test_memory_over_limit(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def handler(event, context):\n    return len(bytearray(event * 1024 * 1024))\n")
    key = f"t/mem/{uuid.uuid4().hex}"
    cfg = FunctionConfig(memory_mb=64)
    out = invoke(pool, code, 128, key=key, config=cfg)
    assert out.status == TaskStatus.FAILED and out.error is not None
    assert out.error["type"] == "MemoryLimitExceeded"
    assert invoke(pool, code, 1, key=key, config=cfg).output == 1024 * 1024


def test_cpu_spin_beyond_cpu_limit(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def handler(event, context):\n    while event:\n        pass\n    return 'ok'\n")
    key = f"t/cpu/{uuid.uuid4().hex}"
    cfg = FunctionConfig(timeout_s=20, cpu_s=1)
    out = invoke(pool, code, True, key=key, config=cfg)
    assert out.duration_ms < 20_000  # the CPU limit ended it, not the 20 s timeout
    assert out.status == TaskStatus.FAILED and out.error is not None and out.error["type"] == "CpuLimitExceeded"
    assert out.cpu_ms >= 900
    assert invoke(pool, code, False, key=key, config=cfg).output == "ok"


def test_file_size_limit(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, """
        def handler(event, context):
            with open("big.bin", "wb") as fh:
                for _ in range(event):
                    fh.write(b"z" * 1024 * 1024)
            return event
    """)
    cfg = FunctionConfig(max_file_mb=2)
    out = invoke(pool, code, 3, config=cfg)
    assert out.status == TaskStatus.FAILED and out.error is not None
    assert out.error["type"] == "FileSizeLimitExceeded"


def test_crash_is_reported_and_pool_recovers(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "import os\ndef handler(event, context):\n    if event:\n        os._exit(3)\n"
                                "    return 1\n")
    key = f"t/crash/{uuid.uuid4().hex}"
    out = invoke(pool, code, True, key=key)
    assert out.status == TaskStatus.FAILED and out.error is not None
    assert out.error["type"] == "SandboxCrashed" and "code 3" in out.error["message"]
    again = invoke(pool, code, False, key=key)
    assert again.status == TaskStatus.SUCCEEDED and again.cold_start


def test_kill_cancels_running_invocation(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "import time\ndef handler(event, context):\n    time.sleep(event)\n    return event\n")
    key = f"t/cancel/{uuid.uuid4().hex}"
    assert invoke(pool, code, 0, key=key).status == TaskStatus.SUCCEEDED
    timer = threading.Timer(0.3, pool.kill, args=(key,))
    timer.start()
    out = invoke(pool, code, 20, key=key)
    timer.join()
    assert out.status == TaskStatus.CANCELLED and out.duration_ms < 5000
    assert invoke(pool, code, 0, key=key).cold_start


def test_idle_children_reaped_and_lru_bounded(tmp_path: Path) -> None:
    code = write_code(tmp_path, COUNTER)
    root = sandbox_root()
    keys = [f"t/lru/{i}" for i in range(3)]
    bounded = SandboxPool(root, idle_ttl_s=600, max_warm=2)  # no reaping during the check, however slow the host
    try:
        for k in keys:
            invoke(bounded, code, {}, key=k)
        assert bounded.warm_count() == 2 and bounded.warm_count(keys[0]) == 0
    finally:
        bounded.close()
    reaping = SandboxPool(root, idle_ttl_s=0.3, max_warm=2)
    try:
        invoke(reaping, code, {}, key=keys[2])
        deadline = time.monotonic() + 30
        while reaping.warm_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reaping.warm_count() == 0
        assert invoke(reaping, code, {}, key=keys[2]).cold_start
    finally:
        reaping.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(("source", "handler", "etype"), [
    ("import not_a_module_anywhere\ndef handler(e, c):\n    pass\n", "main.handler", "ModuleNotFoundError"),
    ("def handler(e, c)\n    pass\n", "main.handler", "SyntaxError"),
    ("raise RuntimeError('boom at import')\n", "main.handler", "RuntimeError"),
    ("def other(e, c):\n    pass\n", "main.handler", "HandlerNotFound"),
    ("handler = 42\n", "main.handler", "HandlerNotCallable"),
    ("def handler(a, b, c):\n    pass\n", "main.handler", "HandlerSignatureError"),
    ("def handler():\n    pass\n", "main.handler", "HandlerSignatureError"),
    ("def handler(e, c):\n    pass\n", "main", "InvalidHandler"),
])
def test_activation_gate_rejects(pool: SandboxPool, tmp_path: Path, source: str, handler: str, etype: str) -> None:
    code = write_code(tmp_path, source)
    error = pool.check_handler(key=f"t/check/{uuid.uuid4().hex}", code_dir=code, handler=handler,
                               config=FunctionConfig())
    assert error is not None and error["type"] == etype
    assert isinstance(error["message"], str) and isinstance(error["stack"], list)


@pytest.mark.parametrize("source", [
    "def handler(event, context):\n    pass\n",
    "def handler(event):\n    pass\n",
    "def handler(event, context=None, extra=1):\n    pass\n",
    "class H:\n    def __call__(self, event, context):\n        pass\nhandler = H()\n",
])
def test_activation_gate_accepts(pool: SandboxPool, tmp_path: Path, source: str) -> None:
    code = write_code(tmp_path, source)
    assert pool.check_handler(key=f"t/check/{uuid.uuid4().hex}", code_dir=code, handler="main.handler",
                              config=FunctionConfig()) is None
    assert not list((pool.root / "c").iterdir()), "one-shot check dirs are removed"


def test_concurrent_calls_on_one_key_get_separate_children(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "import os, time\nTOKEN = os.urandom(8).hex()\n"
                                "def handler(event, context):\n    time.sleep(0.3)\n    return TOKEN\n")
    key = f"t/conc/{uuid.uuid4().hex}"
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(invoke(pool, code, {}, key=key).output))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] != results[1]
    assert pool.warm_count(key) == 2


def test_get_pool_is_a_process_singleton(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cluster.sandbox import get_pool
    from cluster.sandbox import pool as pool_module

    monkeypatch.setattr(pool_module, "_pool", None)
    monkeypatch.setenv("CLOUDFN_SANDBOX_ROOT", str(tmp_path / "sbx"))
    first = get_pool()
    try:
        assert first is get_pool() and first.root == tmp_path / "sbx"
    finally:
        first.close()
