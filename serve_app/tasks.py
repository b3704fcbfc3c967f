"""Reading task records in the contract's shape."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from core.db.tables import ExecutionMetric, Task
from core.errors import InvalidInput, NotFound

METRIC_KEYS = ("duration_ms", "cpu_ms", "peak_memory_mb", "queue_ms", "cold_start", "input_bytes", "output_bytes")


def _iso(v: Any) -> str | None:
    return None if v is None else v.isoformat()


def task_view(t: Any, m: Any | None) -> dict[str, Any]:
    """The contract's task record."""
    metrics: dict[str, Any] = {k: (getattr(m, k) if m is not None else None) for k in METRIC_KEYS}
    return {"task_id": t.id, "function": t.function_name, "version": t.version, "status": t.status,
            "output": t.output, "error": t.error, "metrics": metrics, "attempt": t.attempt,
            "namespace": t.namespace, "kind": t.kind, "created_at": _iso(t.created_at),
            "started_at": _iso(t.started_at), "finished_at": _iso(t.finished_at)}


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
        return task_view(row[0], row[1])

    async def logs(self, namespace: str, task_id: str) -> str:
        """What the handler printed and logged."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Task.logs).where(Task.id == task_id, Task.namespace == namespace))).first()
        if row is None:
            raise NotFound(f"no task with id {task_id!r}")
        return row[0] or ""

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
