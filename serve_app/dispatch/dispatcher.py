"""Per-function queues with concurrency limits, submission to Ray, retries, cancellation, and results.

Each function has its own bounded queue and its own `max_concurrency`, so one function flooding its
queue never delays another's invocations; each queue is served in order of arrival. Each tenant's quotas
(serve_app.dispatch.quotas) bound its invocations running at once (the rest wait in their queues) and queued.
Queued invocations of a version whose executions are short go to Ray in batches (one task runs several,
one after another, each in the warm sandbox with its own metrics and limits): a Ray task costs far more
than a short handler.
Results are awaited as asyncio futures on the Ray object refs: no Ray worker and no request is ever blocked waiting.
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

from core.errors import Overloaded
from core.models import TaskStatus
from serve_app.catalog.registry import FunctionRuntime
from serve_app.dispatch.quotas import QuotaGate
from serve_app.dispatch.runners import Runner
from serve_app.write.writer import GroupCommitWriter, TaskResult

log = logging.getLogger(__name__)
BACKSTOP_GRACE_S = 30.0  # beyond the function's own timeout (which the sandbox enforces)
BATCH_BUDGET_MS = 20.0  # a batch's expected run time at most
BATCH_SHORT_MS = 5.0  # a version is batched only while its executions average below this
BATCH_MIN_SAMPLES = 3  # ... and only once it has run this often
UNTRIED_PATIENCE_S = 0.2  # how long a version of unknown speed (never run) waits for a host slot, not spilling
PROBE_CALLS = 2  # calls of a version of unknown speed at once, until it is known or its patience ends
TRIAL_BATCH = 4  # the largest batch of a version that has not yet run BATCH_MIN_SAMPLES times itself
SANDBOX_OVERHEAD_MS = 0.3  # per invocation in a warm sandbox, on top of the handler's own time
SPEED_WEIGHT = 0.2  # weight of the newest execution in the running mean duration
PEAK_WINDOW_S = 600.0  # how long a function's peak of concurrent calls is remembered
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
    runner: Any = None  # the Runner its call went to, while it runs
    cancelled: bool = False
    batched: bool = False  # its call is not killed for it: a batch with other invocations, or an express lane
    timer: asyncio.TimerHandle | None = None


@dataclass
class FnQueue:
    """One function's queue and running count."""

    waiting: deque[Pending] = field(default_factory=deque)
    running: int = 0
    reserved: int = 0  # admitted, being persisted, not yet queued
    pump_scheduled: bool = False
    calls: int = 0  # executor calls (batches) running now: each uses one warm child
    peak_calls: int = 0  # the most running at once lately (see Dispatcher.recent_peak)
    peak_at: float = 0.0
    untried_since: dict[str, float] = field(default_factory=dict)  # version key -> first dispatch while its speed
    # was unknown (monotonic)
    patience_timer: asyncio.TimerHandle | None = None  # pumps again when that version's patience ends


def _function_key(rt: FunctionRuntime) -> str:
    """The key under which a function's latest speed is kept, whatever its version."""
    return f"function:{rt.namespace}/{rt.name}"


def batch_common(rt: FunctionRuntime) -> dict[str, Any]:
    """What every invocation of a batch of this version shares, as its executor reads it."""
    return {"key": rt.key, "namespace": rt.namespace, "function": rt.name, "version": rt.version,
            "handler": rt.handler, "config": rt.config_dict}


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

    def __init__(self, writer: GroupCommitWriter, quotas: QuotaGate,
                 on_result: Callable[[Pending, TaskResult], None] | None = None, *,
                 runner_for: Callable[[FunctionRuntime, bool, bool], Runner | None] = (
                     lambda rt, short, may_wait: rt.remote),
                 on_dispatch: Callable[[str, str, int], None] | None = None) -> None:
        self.writer = writer
        self.quotas = quotas
        self.on_result = on_result
        # where a version's next batch runs, given whether its executions are short and whether it may wait for
        # one of its running calls to end (None: wait; see Platform._runner_for)
        self.runner_for = runner_for
        self.on_dispatch = on_dispatch  # (tenant, function, invocations in the Ray task)
        self._queues: dict[tuple[str, str], FnQueue] = {}
        self._inflight: dict[str, Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._speed: dict[str, tuple[int, float]] = {}  # version key -> (executions seen, mean duration ms)
        # tenant -> its queues with invocations held back by its concurrency quota, in the order they were held
        self._held: dict[str, dict[tuple[str, str], None]] = {}

    def admit(self, rt: FunctionRuntime) -> None:
        """Reserve a place in this function's queue and in its tenant's quotas, or raise Overloaded (QuotaExceeded
        for a tenant's quota) having reserved nothing (call before persisting; `submit` with `reserved=True` or
        `release` gives the place back)."""
        q = self._queues.setdefault((rt.namespace, rt.name), FnQueue())
        self.quotas.admit(rt.namespace)
        if q.running + len(q.waiting) + q.reserved >= rt.config.max_concurrency + rt.config.max_queue:
            self.quotas.unadmit(rt.namespace)
            raise Overloaded(f"function {rt.name!r} has {len(q.waiting) + q.reserved} invocations queued (max_queue "
                             f"{rt.config.max_queue}); retry later", retry_after_s=1)
        q.reserved += 1

    def release(self, rt: FunctionRuntime) -> None:
        """Give back a place reserved by `admit` (the invocation was not accepted after all)."""
        q = self._queues.get((rt.namespace, rt.name))
        if q is not None and q.reserved > 0:
            q.reserved -= 1
            self.quotas.unadmit(rt.namespace)

    def submit(self, p: Pending, *, reserved: bool = False) -> asyncio.Future[TaskResult]:
        """Queue an accepted (already persisted) invocation; the future resolves with its final result."""
        if p.done is None:
            p.done = asyncio.get_running_loop().create_future()
        self._inflight[p.task_id] = p
        q = self._queues.setdefault((p.rt.namespace, p.rt.name), FnQueue())
        if reserved and q.reserved > 0:
            q.reserved -= 1
        else:  # accepted without `admit` (a pipeline step, a recovered or redriven task): queued all the same
            self.quotas.load(p.rt.namespace).queued += 1
        q.waiting.append(p)
        self._pump_soon(q, p.rt.config.max_concurrency)
        return p.done

    def inflight(self, task_id: str) -> Pending | None:
        """The in-flight invocation with this id, if this replica holds it."""
        return self._inflight.get(task_id)

    def recent_peak(self, namespace: str, name: str) -> int:
        """The most executor calls of this function that ran at once in the last PEAK_WINDOW_S (0: none)."""
        q = self._queues.get((namespace, name))
        if q is None or time.monotonic() - q.peak_at > PEAK_WINDOW_S:
            return 0
        return q.peak_calls

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
            self.quotas.load(p.rt.namespace).queued -= 1
            await self._complete(p, self._lost(p, time.time(), "Cancelled", "cancelled while queued",
                                               TaskStatus.CANCELLED))
        elif p.timer is not None:
            p.timer.cancel()
            await self._complete(p, self._lost(p, time.time(), "Cancelled", "cancelled before its retry",
                                               TaskStatus.CANCELLED))
        elif p.ref is not None and not p.batched and p.runner is not None:
            p.runner.cancel(p.ref, p.task_id)  # kills its sandboxed child (a task's whole worker, PDEATHSIG)
        # a batched invocation is left to finish: it is short (see _batch_size), and killing its worker would
        # kill the other invocations of the batch (or an express lane); its record then shows how it really ended
        return True

    def _pump_soon(self, q: FnQueue, limit: int) -> None:
        """Dispatch on the next turn of the event loop, so that invocations accepted together (one group
        commit resolves many) can share a batch."""
        if not q.pump_scheduled:
            q.pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump, q, limit)

    def _pump(self, q: FnQueue, limit: int) -> None:
        q.pump_scheduled = False
        while q.waiting and q.running < limit:
            first = q.waiting[0]
            tenant = self.quotas.load(first.rt.namespace)
            room = tenant.limits.concurrency - tenant.running
            if room <= 0:  # the tenant's concurrency quota: wait for one of its invocations to end
                self._held.setdefault(first.rt.namespace, {})[(first.rt.namespace, first.rt.name)] = None
                return
            patience = self._patience_left(q, first.rt)
            if patience > 0 and q.calls >= PROBE_CALLS:  # its first calls tell its speed; the rest wait for that
                self._repump_after(q, limit, patience)
                return
            # a fast version may rather wait for one of its running calls to end (that end pumps again)
            may_wait = q.running > 0 and (patience > 0 or self._fast(first.rt))
            runner = self.runner_for(first.rt, self._short(first.rt), may_wait)
            if runner is None:
                if patience > 0:
                    self._repump_after(q, limit, patience)
                return
            q.waiting.popleft()
            batch = [first]
            size = min(self._batch_size(first.rt, limit), limit - q.running, room)
            while len(batch) < size and q.waiting and q.waiting[0].rt.key == first.rt.key:
                batch.append(q.waiting.popleft())
            q.running += len(batch)
            q.calls += 1
            now = time.monotonic()
            if q.calls >= q.peak_calls or now - q.peak_at > PEAK_WINDOW_S:
                q.peak_calls, q.peak_at = q.calls, now
            tenant.running += len(batch)
            tenant.queued -= len(batch)
            if self.on_dispatch is not None:
                self.on_dispatch(first.rt.namespace, first.rt.name, len(batch))
            t = asyncio.get_running_loop().create_task(self._run(q, batch, runner))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    def quotas_changed(self, namespace: str) -> None:
        """A tenant's quotas changed: dispatch what a larger concurrency quota now lets run."""
        self._pump_held(namespace)

    def _pump_held(self, namespace: str) -> None:
        """Dispatch what a tenant's concurrency quota held back, oldest-held queue first, while it has room."""
        held = self._held.get(namespace)
        tenant = self.quotas.load(namespace)
        while held and tenant.running < tenant.limits.concurrency:
            key = next(iter(held))
            del held[key]
            q = self._queues.get(key)
            if q is not None and q.waiting:
                self._pump(q, q.waiting[0].rt.config.max_concurrency)

    def _speed_of(self, rt: FunctionRuntime) -> tuple[int, float]:
        """(executions seen, mean duration ms) of this version once it has run BATCH_MIN_SAMPLES times, else of its
        function (all its versions): a new version is expected to run like the one it replaces until it has run
        itself."""
        own = self._speed.get(rt.key, (0, 0.0))
        if own[0] >= BATCH_MIN_SAMPLES:
            return own
        known = self._speed.get(_function_key(rt), (0, 0.0))
        return known if known[0] >= own[0] else own

    def _patience_left(self, q: FnQueue, rt: FunctionRuntime) -> float:
        """How long a version of unknown speed (neither it nor its function's previous version ran
        BATCH_MIN_SAMPLES times) is still held to PROBE_CALLS calls on its warm host, never spilling; 0 once its
        speed is known or UNTRIED_PATIENCE_S after its first dispatch.

        A brand-new function's first burst would otherwise start a jailed child per host slot and, past them, a
        Ray worker per queued call for its runtime_env (about a second of CPU each), before learning that its
        calls end within a millisecond and run best in batches on the children it already has. A slow version
        (no call ended within the patience) spills as before, UNTRIED_PATIENCE_S later."""
        if self._speed_of(rt)[0] >= BATCH_MIN_SAMPLES:
            return 0.0
        now = time.monotonic()
        return max(0.0, q.untried_since.setdefault(rt.key, now) + UNTRIED_PATIENCE_S - now)

    def _repump_after(self, q: FnQueue, limit: int, delay_s: float) -> None:
        """Pump again when a waiting version's patience ends, even if none of its calls ended by then (a slow
        one's may take minutes); one timer per queue."""
        if q.patience_timer is None:
            def again() -> None:
                q.patience_timer = None
                self._pump_soon(q, limit)
            q.patience_timer = asyncio.get_running_loop().call_later(delay_s + 0.005, again)

    def _fast(self, rt: FunctionRuntime) -> bool:
        """True when this version's (or its function's) recent executions were short."""
        samples, mean_ms = self._speed_of(rt)
        return samples >= BATCH_MIN_SAMPLES and mean_ms <= BATCH_SHORT_MS

    def _short(self, rt: FunctionRuntime) -> bool:
        """True when this version's recent executions were short and it accepts batching (max_batch > 1)."""
        return rt.config.max_batch != 1 and self._fast(rt)

    def _batch_size(self, rt: FunctionRuntime, limit: int) -> int:
        """How many queued invocations of this version one Ray task may run: 1 unless its recent executions
        were short (then a batch is expected to end within BATCH_BUDGET_MS)."""
        if not self._short(rt):
            return 1
        _, mean_ms = self._speed_of(rt)
        per_item_ms = mean_ms + SANDBOX_OVERHEAD_MS
        size = max(1, min(rt.config.max_batch, limit // 2, int(BATCH_BUDGET_MS / per_item_ms)))
        # a new version judged by its function's speed may be slower: its first batches stay small until it has
        # run itself (else a version that sleeps 5 s would keep its first 32 calls one after another in one child)
        return size if self._speed.get(rt.key, (0, 0.0))[0] >= BATCH_MIN_SAMPLES else min(size, TRIAL_BATCH)

    def _observe_speed(self, rt: FunctionRuntime, results: list[TaskResult]) -> None:
        """Fold executions into the version's running mean duration: the handler's own time, less the part of it
        spent runnable without a CPU (`cpu_wait_ms`). On a busy host a no-op handler's wall time is now and then
        tens of milliseconds of run-queue wait; counted, one such sample made a fast version read as slow for a
        moment, and its next calls spilled to Ray tasks whose workers must start (about a second of CPU each)."""
        durations = [max(0.0, float(r.handler_ms if r.handler_ms is not None else r.metrics.get("duration_ms") or 0.0)
                         - float(r.metrics.get("cpu_wait_ms") or 0.0)) for r in results if r.metrics is not None]
        for key in (rt.key, _function_key(rt)):  # the version's own, and its function's across versions
            samples, mean_ms = self._speed.get(key, (0, 0.0))
            for d in durations:
                mean_ms = d if samples == 0 else (1 - SPEED_WEIGHT) * mean_ms + SPEED_WEIGHT * d
                samples += 1
            self._speed[key] = (samples, mean_ms)

    async def _run(self, q: FnQueue, batch: list[Pending], runner: Runner) -> None:
        rt = batch[0].rt
        dispatched = time.time()
        common = batch_common(rt)
        ref = None
        try:
            ref = runner.submit(common, [(p.task_id, p.event_json) for p in batch])
            for p in batch:
                p.ref, p.runner, p.batched = ref, runner, len(batch) > 1 or not runner.cancel_kills_call
                self.writer.mark_running(p.task_id, dispatched)
            outs = await asyncio.wait_for(ref, timeout=rt.config.timeout_s * len(batch) + BACKSTOP_GRACE_S)
            results = [self._result_from_outcome(p, out) for p, out in zip(batch, outs, strict=True)]
        except TimeoutError:
            if ref is not None:
                runner.abort(ref)
            results = [self._lost(p, dispatched, "TimeoutError", "the executor did not answer in time; killed",
                                  TaskStatus.TIMED_OUT) for p in batch]
        except Exception as exc:  # worker died, cancelled, runtime_env failed, ...
            runner.failed()
            if not any(p.cancelled and not p.batched for p in batch):
                log.warning("tasks %s lost their executor: %r", [p.task_id for p in batch], exc)
            results = [self._lost(p, dispatched, "Cancelled", "cancelled while running; its process was killed",
                                  TaskStatus.CANCELLED) if p.cancelled and not p.batched else
                       self._lost(p, dispatched, "ExecutorLost", f"the executor was lost: {type(exc).__name__}")
                       for p in batch]
        finally:
            runner.release()
            for p in batch:
                p.ref = p.runner = None
            q.running -= len(batch)
            q.calls -= 1
            self.quotas.load(rt.namespace).running -= len(batch)
            held = self._held.get(rt.namespace)
            if held:  # the tenant's queues held back by its quota go first, then this one (no queue starves)
                if q.waiting:
                    held.setdefault((rt.namespace, rt.name), None)
                self._pump_held(rt.namespace)
            else:
                self._pump(q, rt.config.max_concurrency)
        self._observe_speed(rt, results)
        await asyncio.gather(*(self._settle(p, r) for p, r in zip(batch, results, strict=True)))

    async def _settle(self, p: Pending, result: TaskResult) -> None:
        """Record one attempt's result: complete the task, or schedule its retry."""
        rt = p.rt
        if p.cancelled and not p.batched and result.status != TaskStatus.CANCELLED.value:
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
        self.quotas.load(p.rt.namespace).queued += 1
        self._pump_soon(q, p.rt.config.max_concurrency)

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
                   "cpu_wait_ms": out["cpu_wait_ms"],
                   "peak_memory_mb": out["peak_memory_mb"], "queue_ms": queue_ms,
                   "cold_start": bool(out["cold_start"]), "error_type": error_type,
                   "input_bytes": out["input_bytes"], "output_bytes": out["output_bytes"], "node": out.get("node")}
        return TaskResult(id=p.task_id, status=out["status"], output_json=out["output_json"], error=out["error"],
                          logs=out["logs"], started_at=out["started_at"], finished_at=out["finished_at"],
                          attempt=p.attempt, metrics=metrics, handler_ms=out.get("handler_ms"))

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
