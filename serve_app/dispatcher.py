"""Per-function queues with concurrency limits, submission to Ray, retries, cancellation, and results.

Each function has its own bounded queue and its own `max_concurrency`, so one function flooding its
queue never delays another's invocations; each queue is served in order of arrival. Results are awaited
as asyncio futures on the Ray object refs: no Ray worker and no request is ever blocked waiting.
A failed attempt is retried (same task id, next attempt number, exponential backoff) when the function's
config allows it; the attempt is recorded. Ray itself never retries (`max_retries=0`), so an execution
the platform does not know about cannot happen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import ray

from core.errors import Overloaded
from core.models import TaskStatus
from serve_app.registry import FunctionRuntime
from serve_app.writer import GroupCommitWriter, TaskResult

log = logging.getLogger(__name__)
BACKSTOP_GRACE_S = 30.0  # beyond the function's own timeout (which the sandbox enforces)
LIMIT_ERRORS = {"TimeoutError", "MemoryLimitExceeded", "CpuLimitExceeded", "FileSizeLimitExceeded",
                "OutputLimitExceeded"}


@dataclass
class Pending:
    """An accepted invocation waiting for (or in) execution."""

    task_id: str
    rt: FunctionRuntime
    event_json: bytes
    created_at: float
    attempt: int = 1
    parent_id: str | None = None
    step_index: int | None = None
    done: asyncio.Future[TaskResult] | None = None
    ref: Any = None
    cancelled: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass
class FnQueue:
    """One function's queue and running count."""

    waiting: deque[Pending] = field(default_factory=deque)
    running: int = 0
    reserved: int = 0  # admitted, being persisted, not yet queued


def retryable(result: TaskResult, rt: FunctionRuntime, attempt: int) -> bool:
    """Whether a failed attempt should run again under the function's retry policy."""
    if attempt > rt.config.max_retries or result.status not in ("failed", "timed_out"):
        return False
    etype = (result.error or {}).get("type")
    if etype == "Cancelled":
        return False
    if result.status == "timed_out" or etype in LIMIT_ERRORS:
        return rt.config.retry_on_timeout
    return True


class Dispatcher:
    """Admits, queues, dispatches, retries, cancels and completes invocations."""

    def __init__(self, writer: GroupCommitWriter,
                 on_result: Callable[[Pending, TaskResult], None] | None = None) -> None:
        self.writer = writer
        self.on_result = on_result
        self._queues: dict[tuple[str, str], FnQueue] = {}
        self._inflight: dict[str, Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def admit(self, rt: FunctionRuntime) -> None:
        """Reserve a place in this function's queue, or raise Overloaded (call before persisting; `submit`
        with `reserved=True` or `release` gives the place back)."""
        q = self._queues.setdefault((rt.namespace, rt.name), FnQueue())
        if q.running + len(q.waiting) + q.reserved >= rt.config.max_concurrency + rt.config.max_queue:
            raise Overloaded(f"function {rt.name!r} has {len(q.waiting) + q.reserved} invocations queued (max_queue "
                             f"{rt.config.max_queue}); retry later", retry_after_s=1)
        q.reserved += 1

    def release(self, rt: FunctionRuntime) -> None:
        """Give back a place reserved by `admit` (the invocation was not accepted after all)."""
        q = self._queues.get((rt.namespace, rt.name))
        if q is not None and q.reserved > 0:
            q.reserved -= 1

    def submit(self, p: Pending, *, reserved: bool = False) -> asyncio.Future[TaskResult]:
        """Queue an accepted (already persisted) invocation; the future resolves with its final result."""
        if p.done is None:
            p.done = asyncio.get_running_loop().create_future()
        self._inflight[p.task_id] = p
        q = self._queues.setdefault((p.rt.namespace, p.rt.name), FnQueue())
        if reserved and q.reserved > 0:
            q.reserved -= 1
        q.waiting.append(p)
        self._pump(q, p.rt.config.max_concurrency)
        return p.done

    def inflight(self, task_id: str) -> Pending | None:
        """The in-flight invocation with this id, if this replica holds it."""
        return self._inflight.get(task_id)

    def queue_depth(self, namespace: str, name: str) -> tuple[int, int]:
        """(running, waiting) of a function."""
        q = self._queues.get((namespace, name))
        return (q.running, len(q.waiting)) if q else (0, 0)

    async def cancel(self, task_id: str) -> bool:
        """Stop a queued, backing-off or running invocation held here; False if this replica does not hold it."""
        p = self._inflight.get(task_id)
        if p is None:
            return False
        p.cancelled = True
        q = self._queues.get((p.rt.namespace, p.rt.name))
        if q is not None and p in q.waiting:
            q.waiting.remove(p)
            await self._complete(p, self._lost(p, time.time(), "Cancelled", "cancelled while queued",
                                               TaskStatus.CANCELLED))
        elif p.timer is not None:
            p.timer.cancel()
            await self._complete(p, self._lost(p, time.time(), "Cancelled", "cancelled before its retry",
                                               TaskStatus.CANCELLED))
        elif p.ref is not None:
            ray.cancel(p.ref, force=True)  # kills the worker; its sandboxed child dies with it (PDEATHSIG)
        return True

    def _pump(self, q: FnQueue, limit: int) -> None:
        while q.waiting and q.running < limit:
            p = q.waiting.popleft()
            q.running += 1
            t = asyncio.get_running_loop().create_task(self._run(q, p))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _run(self, q: FnQueue, p: Pending) -> None:
        rt = p.rt
        dispatched = time.time()
        req = {"task_id": p.task_id, "key": rt.key, "namespace": rt.namespace, "function": rt.name,
               "version": rt.version, "handler": rt.handler, "config": rt.config_dict, "event": p.event_json}
        try:
            p.ref = rt.remote.remote(req)
            self.writer.mark_running(p.task_id, dispatched)
            out = await asyncio.wait_for(p.ref, timeout=rt.config.timeout_s + BACKSTOP_GRACE_S)
            result = self._result_from_outcome(p, out)
        except TimeoutError:
            ray.cancel(p.ref, force=True)
            result = self._lost(p, dispatched, "TimeoutError", "the executor did not answer in time; killed",
                                TaskStatus.TIMED_OUT)
        except Exception as exc:  # worker died, cancelled, runtime_env failed, ...
            if p.cancelled:
                result = self._lost(p, dispatched, "Cancelled", "cancelled while running; its process was killed",
                                    TaskStatus.CANCELLED)
            else:
                log.warning("task %s lost its executor: %r", p.task_id, exc)
                result = self._lost(p, dispatched, "ExecutorLost", f"the executor was lost: {type(exc).__name__}")
        finally:
            p.ref = None
            q.running -= 1
            self._pump(q, rt.config.max_concurrency)
        if p.cancelled and result.status != TaskStatus.CANCELLED.value:
            result = replace(result, status=TaskStatus.CANCELLED.value, output_json=None, error={
                "type": "Cancelled", "message": "cancelled while running; its process was killed", "stack": []})
        if not p.cancelled and retryable(result, rt, p.attempt):
            delay = rt.config.retry_backoff_s * (2 ** (p.attempt - 1))
            await self.writer.finish(replace(result, retry_delay_s=delay))
            p.attempt += 1
            p.timer = asyncio.get_running_loop().call_later(delay, self._retry, p)
            return
        await self._complete(p, result)

    def _retry(self, p: Pending) -> None:
        p.timer = None
        q = self._queues.setdefault((p.rt.namespace, p.rt.name), FnQueue())
        q.waiting.appendleft(p)  # a retry keeps its place at the head of its function's queue
        self._pump(q, p.rt.config.max_concurrency)

    async def _complete(self, p: Pending, result: TaskResult) -> None:
        await self.writer.finish(result)
        self._inflight.pop(p.task_id, None)
        if self.on_result is not None:
            try:
                self.on_result(p, result)
            except Exception:
                log.exception("result callback failed for %s", p.task_id)
        if p.done is not None and not p.done.done():
            p.done.set_result(result)

    def _result_from_outcome(self, p: Pending, out: dict[str, Any]) -> TaskResult:
        rt = p.rt
        queue_ms = max(0.0, (out["started_at"] - p.created_at) * 1000.0)
        error_type = (out["error"] or {}).get("type") if out["error"] else None
        metrics = {"task_id": p.task_id, "namespace": rt.namespace, "function": rt.name, "version": rt.version,
                   "attempt": p.attempt, "status": out["status"], "started_at": out["started_at"],
                   "finished_at": out["finished_at"], "duration_ms": out["duration_ms"], "cpu_ms": out["cpu_ms"],
                   "peak_memory_mb": out["peak_memory_mb"], "queue_ms": queue_ms,
                   "cold_start": bool(out["cold_start"]), "error_type": error_type,
                   "input_bytes": out["input_bytes"], "output_bytes": out["output_bytes"]}
        return TaskResult(id=p.task_id, status=out["status"], output_json=out["output_json"], error=out["error"],
                          logs=out["logs"], started_at=out["started_at"], finished_at=out["finished_at"],
                          attempt=p.attempt, metrics=metrics)

    def _lost(self, p: Pending, dispatched: float, etype: str, message: str,
              status: TaskStatus = TaskStatus.FAILED) -> TaskResult:
        return TaskResult(id=p.task_id, status=status.value, output_json=None,
                          error={"type": etype, "message": message, "stack": []}, logs=None,
                          started_at=dispatched, finished_at=time.time(), attempt=p.attempt, metrics=None)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for in-flight work to finish."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)


def dumps_event(event: Any) -> bytes:
    """Canonical JSON bytes of an event."""
    return json.dumps(event, separators=(",", ":")).encode()
