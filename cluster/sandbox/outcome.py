"""Turning child replies and child deaths into `ExecutionOutcome`s."""

from __future__ import annotations

import signal
from typing import Any

from core.models import ExecutionOutcome, FunctionConfig, TaskStatus

from . import protocol
from .child import Child, Exit, Reply
from .spec import cpu_limit_s

TRUNCATED = "\n[... log output truncated: limit of {limit} bytes reached ...]\n"


def err(etype: str, message: str) -> dict[str, Any]:
    """An error dict without a stack."""
    return {"type": etype, "message": message, "stack": []}


def join_logs(parts: list[bytes], cap: int) -> str:
    """Concatenate log chunks (init + invocation), capped at `cap` bytes with a marker."""
    data = b"".join(parts)
    if len(data) > cap + len(TRUNCATED) + 64:
        return data[:cap].decode("utf-8", "replace") + TRUNCATED.format(limit=cap)
    return data.decode("utf-8", "replace")


def from_reply(reply: Reply, logs: str, input_bytes: int) -> ExecutionOutcome:
    """A completed round trip: the child's status, error and output, the supervisor's measurements."""
    header, body, cost = reply.header, reply.body, reply.cost
    error = header.get("error")
    ok = header.get("status") == "succeeded" and error is None
    output = output_json = None
    if ok:
        parsed = protocol.parse_output(body or b"null")
        if isinstance(parsed, str):
            ok, error = False, err("OutputNotJSON", parsed)
        else:
            output, output_json = parsed
    elif error is None:
        error = err("SandboxProtocolError", "the function's process reported a failure without an error")
    return ExecutionOutcome(
        status=TaskStatus.SUCCEEDED if ok else TaskStatus.FAILED,
        output=output,
        output_json=output_json,
        error=None if ok else error,
        logs=logs,
        started_at=cost.started_at,
        finished_at=cost.finished_at,
        duration_ms=cost.duration_ms,
        cpu_ms=cost.cpu_ms,
        cpu_wait_ms=min(float(header.get("cpu_wait_ms", 0.0)), cost.duration_ms),
        handler_ms=min(float(header.get("handler_ms", cost.duration_ms)), cost.duration_ms),
        peak_memory_mb=cost.peak_memory_mb,
        input_bytes=input_bytes,
        output_bytes=len(body) if ok else 0,
    )


def death_error(child: Child, exit: Exit | None, config: FunctionConfig, why: str) -> dict[str, Any]:
    """Name what killed a child that stopped answering (a limit if we can tell, else SandboxCrashed)."""
    sig = exit.signal if exit is not None else None
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and exit is not None and exit.cpu_s >= child.cpu_hard - 0.5):
        return err("CpuLimitExceeded", f"CPU time limit of {cpu_limit_s(config):g} s exceeded")
    if sig == signal.SIGXFSZ:
        return err("FileSizeLimitExceeded", f"file size limit of {config.max_file_mb} MB exceeded")
    if child.out_of_memory or child.cg.oom_killed():
        return err("MemoryLimitExceeded", f"memory limit of {config.memory_mb} MB exceeded")
    what = exit.describe() if exit is not None else "did not exit"
    return err("SandboxCrashed", f"the function's process {what} ({why})")


def failure(status: TaskStatus, error: dict[str, Any], started_at: float, finished_at: float, logs: str,
            input_bytes: int) -> ExecutionOutcome:
    """An outcome without a reply from the handler."""
    return ExecutionOutcome(status=status, error=error, logs=logs, started_at=started_at,
                            finished_at=finished_at, duration_ms=(finished_at - started_at) * 1000.0,
                            input_bytes=input_bytes)
