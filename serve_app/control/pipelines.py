"""Chaining: pipelines and ad-hoc `then` chains, run as one parent task with one child task per step.

How a step's output reaches the next step: the API replica (a Ray Serve actor) awaits each step's Ray
object ref as an asyncio future; when the step's result is committed, its continuation (`_advance`)
submits the next step with that output as its event. Nothing goes back to the client, no Ray worker
blocks waiting for another, and every step is an ordinary task with its own id, status and metrics.
Continuations live in the memory of the replica that owns the run; when another replica takes the run over
(its owner's lease ran out, see core.db.leases), `recover` rebuilds them there from the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.access import Caller
from core.db.audit import Change
from core.db.pipelines import PipelineStore
from core.errors import Conflict, InvalidInput, NotFound
from core.models import NAME_PATTERN, NAME_RE
from serve_app.catalog.registry import Registry
from serve_app.dispatch.dispatcher import Dispatcher, Pending
from serve_app.write.writer import GroupCommitWriter, TaskInsert, TaskResult

log = logging.getLogger(__name__)
MAX_STEPS = 50


@dataclass
class Run:
    """A pipeline run in progress."""

    namespace: str
    plan: list[dict[str, Any]]
    started_at: float
    done: asyncio.Future[TaskResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def parse_steps(raw: Any) -> list[dict[str, Any]]:
    """Validate a list of steps: each {"function": NAME, "version"?: int}."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("steps must be a non-empty list of {\"function\": NAME, \"version\"?: N}")
    if len(raw) > MAX_STEPS:
        raise InvalidInput(f"a pipeline has at most {MAX_STEPS} steps")
    steps = []
    for i, s in enumerate(raw):
        if isinstance(s, str):
            s = {"function": s}
        if not isinstance(s, dict) or not isinstance(s.get("function"), str) or not NAME_RE.match(s["function"]):
            raise InvalidInput(f"steps[{i}] must be {{\"function\": NAME}} with NAME matching {NAME_PATTERN}")
        extra = set(s) - {"function", "version"}
        if extra:
            raise InvalidInput(f"steps[{i}] has unknown fields: {', '.join(sorted(extra))}")
        v = s.get("version")
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InvalidInput(f"steps[{i}].version must be a positive integer")
        steps.append({"function": s["function"], "version": v})
    return steps


class Pipelines:
    """Pipeline definitions, runs and their continuations."""

    def __init__(self, store: PipelineStore, registry: Registry, writer: GroupCommitWriter,
                 dispatcher: Dispatcher) -> None:
        self.store = store
        self.registry = registry
        self.writer = writer
        self.dispatcher = dispatcher
        self.runs: dict[str, Run] = {}

    async def create(self, caller: Caller, body: Any) -> dict[str, Any]:
        """Create or replace a named pipeline (every step's function must exist)."""
        if not isinstance(body, dict):
            raise InvalidInput("send a JSON object {\"name\": ..., \"steps\": [...]}")
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"name must match {NAME_PATTERN}")
        steps = parse_steps(body.get("steps"))
        for s in steps:
            await self.registry.resolve(caller.namespace, s["function"], s["version"], require_active=False)
        await self.store.save(caller.namespace, name, steps,
                              Change(caller, "pipelines.create", f"pipeline/{name}", detail={"steps": steps}))
        return await self.get(caller, name)

    async def get(self, caller: Caller, name: str) -> dict[str, Any]:
        """A pipeline definition."""
        return await self.store.get(caller.namespace, name)

    async def start(self, caller: Caller, label: str, plan: list[dict[str, Any]], event_json: bytes,
                    idempotency_key: str | None = None) -> tuple[str, asyncio.Future[TaskResult]]:
        """Persist a run and submit its first step; return (run id, future of the run's final result)."""
        first = await self.registry.resolve(caller.namespace, plan[0]["function"], plan[0]["version"])
        for s in plan[1:]:
            await self.registry.resolve(caller.namespace, s["function"], s["version"])
        run_id = str(uuid.uuid4())
        now = time.time()
        await self.writer.insert(TaskInsert(id=run_id, namespace=caller.namespace, function_id=None,
                                              function_name=label, version=None, input_json=event_json.decode(),
                                              created_at=now, kind="pipeline", status="running",
                                              idempotency_key=idempotency_key, plan=plan))
        run = self.runs[run_id] = Run(caller.namespace, plan, now)
        await self._submit_step(run_id, run, 0, first, event_json)
        return run_id, run.done

    async def _submit_step(self, run_id: str, run: Run, k: int, rt: Any, event_json: bytes) -> str:
        child = str(uuid.uuid4())
        now = time.time()
        # The step's row joins the writer's next batch (always before its own result, which comes later in
        # the same or a later flush); the step starts without waiting for that commit. If the platform dies
        # first, `recover` sees the run's last committed step and submits this one again.
        self.writer.insert_nowait(TaskInsert(id=child, namespace=run.namespace, function_id=rt.function_id,
                                               function_name=rt.name, version=rt.version,
                                               input_json=event_json.decode(), created_at=now, parent_id=run_id,
                                               step_index=k))
        self.dispatcher.submit(Pending(child, rt, event_json, now, parent_id=run_id, step_index=k))
        return child

    def on_result(self, p: Pending, result: TaskResult) -> None:
        """Dispatcher callback: continue the run a finished step belongs to."""
        if p.parent_id is not None and p.step_index is not None:
            asyncio.get_running_loop().create_task(self._advance(p.parent_id, p.step_index, p.task_id, result))

    async def _advance(self, run_id: str, k: int, child_id: str, result: TaskResult) -> None:
        run = self.runs.get(run_id) or await self._load(run_id)
        if run is None:
            log.warning("step %s finished for unknown run %s", child_id, run_id)
            return
        try:
            if result.status == "succeeded" and k + 1 < len(run.plan):
                nxt = run.plan[k + 1]
                rt = await self.registry.resolve(run.namespace, nxt["function"], nxt["version"])
                await self._submit_step(run_id, run, k + 1, rt, (result.output_json or "null").encode())
                return
            if result.status == "succeeded":
                final = TaskResult(run_id, "succeeded", result.output_json, None, None, run.started_at, time.time(),
                                   1, None)
            else:
                err = dict(result.error or {})
                err.update({"step": k, "function": run.plan[k]["function"], "step_task_id": child_id})
                status = "cancelled" if result.status == "cancelled" else "failed"
                final = TaskResult(run_id, status, None, err, None, run.started_at, time.time(), 1, None)
        except Exception as exc:  # the next step's function vanished or was deactivated
            final = TaskResult(run_id, "failed", None, {"type": type(exc).__name__, "message": str(exc), "stack": [],
                                                        "step": k + 1}, None, run.started_at, time.time(), 1, None)
        await self._end(run_id, run, final)

    async def _end(self, run_id: str, run: Run, final: TaskResult) -> None:
        await self.writer.finish(final)
        self.runs.pop(run_id, None)
        if not run.done.done():
            run.done.set_result(final)

    async def _load(self, run_id: str) -> Run | None:
        t = await self.store.run(run_id)
        if t is None or t.kind != "pipeline" or not t.plan:
            return None
        run = self.runs[run_id] = Run(t.namespace, list(t.plan), (t.started_at or t.created_at).timestamp())
        return run

    async def resume(self, caller: Caller, run_id: str) -> dict[str, Any]:
        """Rerun a failed run from its failed step with that step's stored input."""
        t = await self.store.run(run_id, caller.namespace)
        if t is None:
            raise NotFound(f"no task with id {run_id!r}")
        if t.kind != "pipeline":
            raise Conflict("only a pipeline run can be resumed; redrive a failed task with "
                           "POST /v1/dead-letters/{task_id}/redrive")
        if t.status not in ("failed", "timed_out", "cancelled"):
            raise Conflict(f"the run is {t.status}; only a failed run can be resumed")
        failed = await self.store.last_step(run_id)
        if failed is None or failed.step_index is None:
            raise Conflict("the run has no failed step to resume from")
        k = failed.step_index
        run = Run(t.namespace, list(t.plan or []), time.time())
        step = run.plan[k]
        rt = await self.registry.resolve(t.namespace, step["function"], step["version"])
        await self.store.reopen(run_id, self.writer.owner,
                                Change(caller, "tasks.resume", f"task/{run_id}", detail={"from_step": k}))
        self.runs[run_id] = run
        child = await self._submit_step(run_id, run, k, rt, json.dumps(failed.input).encode())
        return {"task_id": run_id, "status": "running", "resumed_from_step": k, "step_task_id": child}

    async def recover(self, run_ids: Sequence[str]) -> None:
        """Rebuild the continuations of open runs this replica took over (core.db.leases) from another, or from
        a previous process."""
        if not run_ids:
            return
        for t in await self.store.open_runs(run_ids):
            run = self.runs[t.id] = Run(t.namespace, list(t.plan or []), (t.started_at or t.created_at).timestamp())
            last = await self.store.last_step(t.id)
            if last is None:  # died before its first step was written: start it now
                try:
                    rt = await self.registry.resolve(t.namespace, run.plan[0]["function"], run.plan[0]["version"])
                    await self._submit_step(t.id, run, 0, rt, json.dumps(t.input).encode())
                except Exception as exc:
                    await self._end(t.id, run, TaskResult(t.id, "failed", None, {
                        "type": type(exc).__name__, "message": str(exc), "stack": [], "step": 0}, None,
                        run.started_at, time.time(), 1, None))
            elif last.status in ("succeeded", "failed", "timed_out", "cancelled"):
                await self._advance(t.id, last.step_index or 0, last.id, TaskResult(
                    last.id, last.status, None if last.output is None else json.dumps(last.output), last.error,
                    None, None, time.time(), last.attempt, None))
            # an open last step was resubmitted by the platform's recovery with its parent id
