"""The pipeline repository: named pipelines, and the task rows a pipeline run's continuation reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from core.db.audit import Change, record
from core.db.tables import Pipeline, Task
from core.errors import NotFound


class PipelineStore:
    """Named pipelines and pipeline runs' rows."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def save(self, namespace: str, name: str, steps: list[dict[str, Any]], change: Change) -> None:
        """Create or replace a named pipeline, audited in the same transaction."""
        stmt = pg_insert(Pipeline).values(namespace=namespace, name=name, steps=steps)
        stmt = stmt.on_conflict_do_update(index_elements=["namespace", "name"],
                                          set_={"steps": stmt.excluded.steps, "updated_at": datetime.now(UTC)})
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
            await record(conn, change)

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        """A named pipeline; NotFound if there is none."""
        async with self.sessions() as s:
            row = (await s.execute(select(Pipeline).where(
                Pipeline.namespace == namespace, Pipeline.name == name))).scalar()
        if row is None:
            raise NotFound(f"no pipeline named {name!r}")
        return {"name": row.name, "steps": row.steps, "created_at": row.created_at.isoformat(),
                "updated_at": row.updated_at.isoformat()}

    async def run(self, run_id: str, namespace: str | None = None) -> Task | None:
        """A task row by id (in `namespace` if given): a pipeline run, or what the caller checks it is."""
        q = select(Task).where(Task.id == run_id)
        if namespace is not None:
            q = q.where(Task.namespace == namespace)
        async with self.sessions() as s:
            return (await s.execute(q)).scalar()

    async def last_step(self, run_id: str) -> Task | None:
        """The task of a run's latest step (its latest attempt at that step)."""
        async with self.sessions() as s:
            return (await s.execute(select(Task).where(Task.parent_id == run_id).order_by(
                Task.step_index.desc(), Task.created_at.desc()).limit(1))).scalar()

    async def open_runs(self, run_ids: Sequence[str]) -> Sequence[Task]:
        """Those of these runs that are still open."""
        async with self.sessions() as s:
            return (await s.execute(select(Task).where(
                Task.id.in_(list(run_ids)), Task.kind == "pipeline",
                Task.status.in_(("queued", "running"))))).scalars().all()

    async def reopen(self, run_id: str, owner: str, change: Change) -> None:
        """Mark a failed run running again (its next attempt) held by replica `owner`, audited."""
        async with self.engine.begin() as conn:
            await conn.execute(text("UPDATE tasks SET status = 'running', error = NULL, finished_at = NULL,"
                                    " attempt = attempt + 1, owner = :owner WHERE id = :id"),
                               {"id": run_id, "owner": owner})
            await record(conn, change)
