"""Several invocations in one request to a warm child: each its own result, logs, metrics and deadline."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from cluster.sandbox import SandboxPool
from core.models import ExecutionOutcome, FunctionConfig, TaskStatus

from .conftest import invoke, make_context, write_code

SOURCE = """
    import os, time
    TOKEN = os.urandom(8).hex()  # tells children apart: in the jail every handler is pid 2
    def handler(event, context):
        left = context.get_remaining_time_in_millis()
        print("event", event["i"])
        if event.get("sleep"):
            time.sleep(event["sleep"])
        if event.get("crash"):
            os._exit(3)
        if event.get("fail"):
            raise ValueError(f"event {event['i']} failed")
        block = bytearray(event.get("mb", 0) * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])
        return {"i": event["i"], "id": context.aws_request_id, "left_ms": left,
                "child": TOKEN}
"""


def run(pool: SandboxPool, code: Path, events: list[dict[str, object]], key: str,
        config: FunctionConfig | None = None) -> list[ExecutionOutcome]:
    cfg = config or FunctionConfig(timeout_s=10, memory_mb=256)
    calls = [(json.dumps(e).encode(), make_context(f"req-{e['i']}", timeout_s=cfg.timeout_s)) for e in events]
    return pool.invoke_many(key=key, code_dir=code, handler="main.handler", config=cfg, calls=calls)


def test_each_invocation_of_a_batch_is_its_own(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, SOURCE)
    key = f"t/batch/{uuid.uuid4().hex}"
    outs = run(pool, code, [{"i": 0}, {"i": 1, "mb": 40}, {"i": 2, "fail": True}, {"i": 3}], key)
    assert [o.status for o in outs] == [TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED, TaskStatus.FAILED,
                                        TaskStatus.SUCCEEDED]
    assert [o.output["id"] for o in outs if o.output] == ["req-0", "req-1", "req-3"]
    assert [o.cold_start for o in outs] == [True, False, False, False]
    assert len({o.output["child"] for o in outs if o.output}) == 1  # one warm child ran them all
    assert all(o.logs.strip().endswith(f"event {i}") for i, o in enumerate(outs))  # logs not mixed
    assert outs[2].error is not None and outs[2].error["message"] == "event 2 failed"
    assert outs[1].peak_memory_mb >= 40 and outs[3].peak_memory_mb < outs[1].peak_memory_mb - 20
    assert all(o.duration_ms >= 0 and o.started_at > 0 for o in outs)
    warm = run(pool, code, [{"i": 4}, {"i": 5}], key)
    assert [o.cold_start for o in warm] == [False, False] and warm[0].output["child"] == outs[0].output["child"]


def test_each_invocation_has_its_own_deadline(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, SOURCE)
    cfg = FunctionConfig(timeout_s=1, memory_mb=128)
    key = f"t/batch/{uuid.uuid4().hex}"
    invoke(pool, code, {"i": -1}, key=key, config=cfg)  # warm: the batch below runs in one child
    outs = run(pool, code, [{"i": i, "sleep": 0.6} for i in range(3)], key, cfg)
    assert [o.status for o in outs] == [TaskStatus.SUCCEEDED] * 3, [o.error for o in outs]
    assert all(o.output["left_ms"] > 800 for o in outs), [o.output for o in outs]


def test_a_timeout_or_crash_mid_batch_fails_that_invocation_only(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, SOURCE)
    cfg = FunctionConfig(timeout_s=1, memory_mb=128)
    key = f"t/batch/{uuid.uuid4().hex}"
    invoke(pool, code, {"i": -1}, key=key, config=cfg)  # warm
    outs = run(pool, code, [{"i": 0}, {"i": 1, "sleep": 5}, {"i": 2}, {"i": 3, "crash": True}, {"i": 4}], key, cfg)
    assert [o.status for o in outs] == [TaskStatus.SUCCEEDED, TaskStatus.TIMED_OUT, TaskStatus.SUCCEEDED,
                                        TaskStatus.FAILED, TaskStatus.SUCCEEDED]
    assert outs[3].error is not None and outs[3].error["type"] == "SandboxCrashed"
    # after each loss the rest ran in a fresh child
    assert outs[2].cold_start and outs[4].cold_start
    assert len({outs[0].output["child"], outs[2].output["child"], outs[4].output["child"]}) == 3
