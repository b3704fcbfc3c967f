"""Reading task records in the contract's shape."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from cluster.sandbox.mode import label as sandbox_label
from core.db.exact_text import load_text
from core.db.tables import ExecutionMetric, Task, TaskAttempt
from core.errors import InvalidInput, NotFound

METRIC_KEYS = ("duration_ms", "cpu_ms", "cpu_wait_ms", "peak_memory_mb", "queue_ms", "cold_start", "input_bytes",
               "output_bytes")


def _iso(v: Any) -> str | None:
    return None if v is None else v.isoformat()


def task_view(t: Any, m: Any | None) -> dict[str, Any]:
    """The contract's task record."""
    metrics: dict[str, Any] = {k: (getattr(m, k) if m is not None else None) for k in METRIC_KEYS}
    return {"task_id": t.id, "function": t.function_name, "version": t.version, "status": t.status,
            "output": t.output, "error": t.error, "metrics": metrics, "attempt": t.attempt,
            "namespace": t.namespace, "kind": t.kind, "created_at": _iso(t.created_at),
            "started_at": _iso(t.started_at), "finished_at": _iso(t.finished_at), "sandbox": sandbox_label(),
            "node": None if m is None else m.node}


class TaskStore:
    """Reads of tasks with their latest metrics."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get(self, namespace: str, task_id: str) -> dict[str, Any]:
        """One task record; NotFound for an unknown id."""
        async with self.sessions() as conn:
            row = (await conn.execute(
                select(Task, ExecutionMetric).outerjoin(ExecutionMetric, (ExecutionMetric.task_id == Task.id) & (
                    ExecutionMetric.attempt == Task.attempt)).where(Task.id == task_id, Task.namespace == namespace)
            )).first()
            if row is None:
                raise NotFound(f"no task with id {task_id!r}")
            rec = task_view(row[0], row[1])
            if row[0].attempt > 1:
                rec["attempts"] = await self._attempts(conn, task_id)
            if row[0].kind == "pipeline":
                rec["steps"] = await self._steps(conn, task_id)
        return rec

    async def _attempts(self, conn: Any, task_id: str) -> list[dict[str, Any]]:
        rows = (await conn.execute(select(TaskAttempt).where(TaskAttempt.task_id == task_id)
                                   .order_by(TaskAttempt.attempt))).scalars().all()
        return [{"attempt": a.attempt, "status": a.status, "error": a.error, "started_at": _iso(a.started_at),
                 "finished_at": _iso(a.finished_at), "retry_delay_s": a.retry_delay_s} for a in rows]

    async def _steps(self, conn: Any, run_id: str) -> list[dict[str, Any]]:
        """The latest task of each step of a pipeline run, in step order."""
        rows = (await conn.execute(
            select(Task, ExecutionMetric).outerjoin(ExecutionMetric, (ExecutionMetric.task_id == Task.id) & (
                ExecutionMetric.attempt == Task.attempt)).where(Task.parent_id == run_id)
            .order_by(Task.step_index, Task.created_at))).all()
        latest: dict[int, dict[str, Any]] = {}
        for t, m in rows:
            v = task_view(t, m)
            latest[t.step_index or 0] = {k: v[k] for k in ("task_id", "function", "version", "status", "output",
                                                           "error", "metrics", "started_at", "finished_at")}
        return [latest[k] for k in sorted(latest)]

    async def dead_letters(self, namespace: str, *, function: str | None, limit: int) -> list[dict[str, Any]]:
        """Function tasks that failed for good, newest first, with their input."""
        q = select(Task).where(Task.namespace == namespace, Task.kind == "function", Task.parent_id.is_(None),
                               Task.status.in_(("failed", "timed_out")))
        if function:
            q = q.where(Task.function_name == function)
        async with self.sessions() as conn:
            rows = (await conn.execute(q.order_by(Task.finished_at.desc().nulls_last()).limit(limit))).scalars().all()
        return [{"task_id": t.id, "function": t.function_name, "version": t.version, "status": t.status,
                 "input": t.input, "error": t.error, "attempts": t.attempt, "created_at": _iso(t.created_at),
                 "failed_at": _iso(t.finished_at)} for t in rows]

    async def logs(self, namespace: str, task_id: str) -> str:
        """What the handler printed and logged."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Task.logs).where(Task.id == task_id, Task.namespace == namespace))).first()
        if row is None:
            raise NotFound(f"no task with id {task_id!r}")
        return load_text(row[0]) or ""

    async def list(self, namespace: str, *, function: str | None, status: str | None,
                   limit: int) -> list[dict[str, Any]]:
        """The newest tasks, optionally of one function or status."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        q = (select(Task, ExecutionMetric).outerjoin(ExecutionMetric, (ExecutionMetric.task_id == Task.id) & (
            ExecutionMetric.attempt == Task.attempt)).where(Task.namespace == namespace))
        if function:
            q = q.where(Task.function_name == function)
        if status:
            q = q.where(Task.status == status)
        q = q.order_by(Task.created_at.desc()).limit(limit)
        async with self.sessions() as conn:
            rows = (await conn.execute(q)).all()
        return [task_view(t, m) for t, m in rows]
