"""Invocation basics: handler forms, context, logs, errors, output handling, metrics."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cluster.sandbox import SandboxPool
from core.models import FunctionConfig, TaskStatus

from .conftest import invoke, make_context, write_code

LOG_LINE = re.compile(r"^\[INFO\]\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\treq-42\tlogged (\d+)$", re.M)


def test_two_arg_handler(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def handler(event, context):\n    return {'hello': event['name']}\n")
    out = invoke(pool, code, {"name": "world"})
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert out.output == {"hello": "world"}
    assert out.cold_start is True and out.extra["init_ms"] > 0
    assert out.input_bytes == len(b'{"name": "world"}') and out.output_bytes == len(b'{"hello": "world"}')


def test_one_arg_handler(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def handler(event):\n    return event * 2\n")
    out = invoke(pool, code, 21)
    assert (out.status, out.output) == (TaskStatus.SUCCEEDED, 42)


def test_nested_handler_paths(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def run(event, context):\n    return 'nested'\n", name="pkg/mod.py")
    (code / "pkg" / "__init__.py").write_text("")
    for handler in ("pkg/mod.run", "pkg.mod.run"):
        out = invoke(pool, code, {}, handler=handler)
        assert (out.status, out.output) == (TaskStatus.SUCCEEDED, "nested"), out.error


def test_context_fields(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, """
        def handler(event, context):
            names = ["function_name", "function_version", "aws_request_id", "memory_limit_in_mb",
                     "invoked_function_arn", "log_group_name", "log_stream_name"]
            return {**{n: getattr(context, n) for n in names}, "left": context.get_remaining_time_in_millis()}
    """)
    ctx = make_context("req-ctx", timeout_s=5.0, name="ctxfn")
    out = invoke(pool, code, {}, context=ctx, config=FunctionConfig(timeout_s=5))
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert out.output["function_name"] == "ctxfn" and out.output["aws_request_id"] == "req-ctx"
    assert out.output["function_version"] == "3" and out.output["memory_limit_in_mb"] == 128
    assert out.output["invoked_function_arn"] == ctx.invoked_function_arn
    assert out.output["log_group_name"] == "/cloudfn/ctxfn" and out.output["log_stream_name"] == ctx.log_stream_name
    assert 3000 < out.output["left"] <= 5000


def test_print_stderr_and_logging_captured(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, """
        import logging, os, sys
        logger = logging.getLogger()
        print("module imported")
        def handler(event, context):
            print("to stdout")
            print("to stderr", file=sys.stderr)
            logger.info("logged %d", 7)
            logging.getLogger("child.logger").debug("not at INFO")
            os.write(1, b"raw fd write\\n")
            return None
    """)
    ctx = make_context("req-42")
    key = f"t/logs/{tmp_path.name}"
    out = invoke(pool, code, {}, key=key, context=ctx)
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert "module imported\n" in out.logs  # init output goes with the cold invocation
    assert "to stdout\n" in out.logs and "to stderr\n" in out.logs and "raw fd write\n" in out.logs
    assert LOG_LINE.search(out.logs) and "not at INFO" not in out.logs
    again = invoke(pool, code, {}, key=key, context=ctx)
    assert "module imported" not in again.logs and again.logs.count("to stdout") == 1


def test_exception_becomes_error_dict(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, """
        class BadInput(ValueError):
            pass
        def check(x):
            raise BadInput(f"bad value {x}")
        def handler(event, context):
            check(event["x"])
    """)
    out = invoke(pool, code, {"x": 5})
    assert out.status == TaskStatus.FAILED and out.output is None
    assert out.error is not None
    assert out.error["type"] == "BadInput" and out.error["message"] == "bad value 5"
    assert len(out.error["stack"]) == 2 and "in handler" in out.error["stack"][0]
    assert "in check" in out.error["stack"][1] and "bootstrap" not in "".join(out.error["stack"])


def test_non_json_output(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def handler(event, context):\n    return {1, 2}\n")
    out = invoke(pool, code, {})
    assert out.status == TaskStatus.FAILED and out.error is not None
    assert out.error["type"] == "OutputNotSerializable" and "set" in out.error["message"]


def test_output_over_cap(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def handler(event, context):\n    return 'x' * event\n")
    cfg = FunctionConfig(max_output_kb=4)
    assert invoke(pool, code, 4000, config=cfg).status == TaskStatus.SUCCEEDED
    out = invoke(pool, code, 5000, config=cfg)
    assert out.status == TaskStatus.FAILED and out.error is not None
    assert out.error["type"] == "OutputLimitExceeded" and out.output is None


def test_logs_capped_with_marker(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def handler(event, context):\n    for _ in range(100):\n        print('y' * 100)\n")
    out = invoke(pool, code, {}, config=FunctionConfig(max_output_kb=2))
    assert out.status == TaskStatus.SUCCEEDED
    assert "log output truncated" in out.logs and len(out.logs) < 2048 + 200


def test_metrics_measured(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, """
        import time
        def handler(event, context):
            if event == "spin":
                end = time.process_time() + 0.2
                while time.process_time() < end:
                    pass
            elif event == "alloc":
                block = bytearray(60 * 1024 * 1024)
                block[::4096] = b"x" * len(block[::4096])
            return event
    """)
    key = f"t/metrics/{tmp_path.name}"
    cfg = FunctionConfig(memory_mb=256)
    spin = invoke(pool, code, "spin", key=key, config=cfg)
    assert spin.cpu_ms >= 180 and spin.duration_ms >= 180
    assert spin.finished_at >= spin.started_at > 0
    alloc = invoke(pool, code, "alloc", key=key, config=cfg)
    assert alloc.peak_memory_mb >= 60
    idle = invoke(pool, code, "idle", key=key, config=cfg)
    assert idle.peak_memory_mb < 40, "peak RSS must be reset between invocations"
    assert idle.cpu_ms < 50


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="kernel without schedstats")
def test_run_queue_wait_measured_under_contention(pool: SandboxPool, tmp_path: Path) -> None:
    """The handler competes with processes of its own (in its own cgroup, as the scheduler weighs a group
    as one): its main thread spends part of its time runnable but without a CPU, and that is measured."""
    code = write_code(tmp_path, """
        import os, signal, time
        def handler(event, context):
            spinners = []
            for _ in range(event["spinners"]):
                pid = os.fork()
                if pid == 0:
                    while True:
                        pass
                spinners.append(pid)
            time.sleep(0.05)
            end = time.process_time() + 0.2
            while time.process_time() < end:
                pass
            for pid in spinners:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    """)
    cfg = FunctionConfig(timeout_s=60, memory_mb=128, cpus=float(os.cpu_count() or 1))
    busy = invoke(pool, code, {"spinners": 2 * (os.cpu_count() or 1)}, key=f"t/wait/{tmp_path.name}", config=cfg)
    assert busy.status == TaskStatus.SUCCEEDED, busy.error
    # more runnable processes than CPUs in its group: the handler's thread waited for a CPU part of the time
    assert 0 < busy.cpu_wait_ms <= busy.duration_ms
    assert busy.cpu_wait_ms >= 0.1 * 200, (busy.cpu_wait_ms, busy.cpu_ms, busy.duration_ms)


def test_deps_dir_on_path(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "import helperlib\ndef handler(event, context):\n    return helperlib.VALUE\n")
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "helperlib.py").write_text("VALUE = 'from deps'\n")
    out = invoke(pool, code, {})
    assert (out.status, out.output) == (TaskStatus.SUCCEEDED, "from deps"), out.error


def test_large_event_and_output_round_trip(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def handler(event, context):\n    return {'len': len(event), 'back': event}\n")
    event = "e" * (3 * 1024 * 1024)
    out = invoke(pool, code, event, config=FunctionConfig(max_output_kb=8192, memory_mb=256))
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert out.output["len"] == len(event) and out.output["back"] == event
    assert out.input_bytes == len(event) + 2 and out.output_bytes > len(event)
