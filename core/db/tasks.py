"""The task repository: task records in the contract's shape, and the task-row changes the API replica makes
outside the group-commit writer (idempotent inserts, cancelling, redriving, recovery)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from core.db.audit import Change, record
from core.db.exact_text import load_text
from core.db.tables import ExecutionMetric, Task, TaskAttempt
from core.errors import Conflict, InvalidInput, NotFound

METRIC_KEYS = ("duration_ms", "cpu_ms", "cpu_wait_ms", "peak_memory_mb", "queue_ms", "cold_start", "input_bytes",
               "output_bytes")
STEP_KEYS = ("task_id", "function", "version", "status", "output", "error", "metrics", "started_at", "finished_at")


def _iso(v: Any) -> str | None:
    return None if v is None else v.isoformat()


def task_view(t: Any, m: Any | None, sandbox: str) -> dict[str, Any]:
    """The contract's task record (`sandbox`: the sandbox mode's label)."""
    metrics: dict[str, Any] = {k: (getattr(m, k) if m is not None else None) for k in METRIC_KEYS}
    return {"task_id": t.id, "function": t.function_name, "version": t.version, "status": t.status,
            "output": t.output, "error": t.error, "metrics": metrics, "attempt": t.attempt,
            "namespace": t.namespace, "kind": t.kind, "created_at": _iso(t.created_at),
            "started_at": _iso(t.started_at), "finished_at": _iso(t.finished_at),
            "sandbox": sandbox,
            "node": None if m is None else m.node}


# a task's columns with its latest attempt's metrics, as plain rows (no ORM objects: a batch of 1,000 is cheap)
RECORD_COLUMNS = select(
    Task.id, Task.function_name, Task.version, Task.status, Task.output, Task.error, Task.attempt, Task.namespace,
    Task.kind, Task.created_at, Task.started_at, Task.finished_at,
    *(getattr(ExecutionMetric, k) for k in METRIC_KEYS), ExecutionMetric.node,
).outerjoin(ExecutionMetric, (ExecutionMetric.task_id == Task.id) & (ExecutionMetric.attempt == Task.attempt))


def ids_param(ids: list[str]) -> Any:
    """A list of ids as one array parameter (`= ANY(...)`): one bind however many ids, so neither SQLAlchemy nor
    psycopg renders and parses a placeholder per id."""
    return bindparam("ids", ids, type_=ARRAY(String), unique=True)


class TaskStore:
    """Tasks with their latest metrics; `sandbox` is the label every record carries (the replica's mode)."""

    def __init__(self, engine: AsyncEngine, sandbox: str) -> None:
        self.engine = engine
        self.sandbox = sandbox
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def get(self, namespace: str, task_id: str) -> dict[str, Any]:
        """One task record; NotFound for an unknown id."""
        rec = (await self.records(namespace, [task_id])).get(task_id)
        if rec is None:
            raise NotFound(f"no task with id {task_id!r}")
        return rec

    async def records(self, namespace: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The records of those of `ids` that exist in the namespace, by id: three queries at most, however
        many ids (tasks with their latest metrics, then the attempts of retried tasks, then pipeline steps)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        sandbox = self.sandbox
        async with self.engine.connect() as conn:
            rows = (await conn.execute(RECORD_COLUMNS.where(Task.id == any_(ids_param(wanted)),
                                                            Task.namespace == namespace))).all()
            out = {row.id: task_view(row, row, sandbox) for row in rows}
            retried = [row.id for row in rows if row.attempt > 1]
            if retried:
                for task_id, attempts in (await self._attempts(conn, retried)).items():
                    out[task_id]["attempts"] = attempts
            runs = [row.id for row in rows if row.kind == "pipeline"]
            if runs:
                steps = await self._steps(conn, runs)
                for run_id in runs:
                    out[run_id]["steps"] = steps.get(run_id, [])
        return out

    async def _attempts(self, conn: Any, task_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        rows = (await conn.execute(select(TaskAttempt.__table__).where(TaskAttempt.task_id == any_(ids_param(task_ids)))
                                   .order_by(TaskAttempt.task_id, TaskAttempt.attempt))).all()
        out: dict[str, list[dict[str, Any]]] = {}
        for a in rows:
            out.setdefault(a.task_id, []).append({
                "attempt": a.attempt, "status": a.status, "error": a.error, "started_at": _iso(a.started_at),
                "finished_at": _iso(a.finished_at), "retry_delay_s": a.retry_delay_s})
        return out

    async def _steps(self, conn: Any, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The latest task of each step of each pipeline run, in step order."""
        rows = (await conn.execute(RECORD_COLUMNS.add_columns(Task.parent_id, Task.step_index)
                                   .where(Task.parent_id == any_(ids_param(run_ids)))
                                   .order_by(Task.parent_id, Task.step_index, Task.created_at))).all()
        latest: dict[str, dict[int, dict[str, Any]]] = {}
        for row in rows:
            v = task_view(row, row, self.sandbox)
            latest.setdefault(row.parent_id, {})[row.step_index or 0] = {k: v[k] for k in STEP_KEYS}
        return {run_id: [steps[k] for k in sorted(steps)] for run_id, steps in latest.items()}

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
        return [task_view(t, m, self.sandbox) for t, m in rows]

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def keyed(self, namespace: str, function_name: str, key: str) -> str | None:
        """The id of the task started under this Idempotency-Key, if any."""
        async with self.engine.connect() as conn:
            found = (await conn.execute(select(Task.id).where(
                Task.namespace == namespace, Task.function_name == function_name,
                Task.idempotency_key == key))).scalar()
        return None if found is None else str(found)

    async def insert_keyed(self, row: dict[str, Any]) -> tuple[str, bool]:
        """Insert a queued function task under an Idempotency-Key, or find the one that holds the key (a key
        older than 24 h is released first): (task id, whether it is new). `row`: id, namespace, function_id,
        function_name, version, input (JSON text), key, owner (the replica that will run it)."""
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "UPDATE tasks SET idempotency_key = NULL WHERE namespace = :namespace AND function_name = "
                ":function_name AND idempotency_key = :key AND created_at < now() - interval '24 hours'"), row)
            got = (await conn.execute(text(
                "INSERT INTO tasks (id, namespace, function_id, function_name, version, kind, status, input, attempt,"
                " idempotency_key, created_at, owner) VALUES (:id, :namespace, :function_id, :function_name,"
                " :version, 'function', 'queued', CAST(:input AS json), 1, :key, now(), :owner)"
                " ON CONFLICT (namespace, function_name, idempotency_key) WHERE idempotency_key IS NOT NULL"
                " DO NOTHING RETURNING id"), row)).scalar()
            if got:
                return str(got), True
            old = (await conn.execute(text(
                "SELECT id FROM tasks WHERE namespace = :namespace AND function_name = :function_name"
                " AND idempotency_key = :key"), row)).scalar()
        return str(old), False

    async def cancel_open(self, task_id: str, error: dict[str, Any]) -> Sequence[str]:
        """End a queued or running task and its open pipeline steps as cancelled, in place; the ids ended."""
        async with self.engine.begin() as conn:
            ended = (await conn.execute(text(
                "UPDATE tasks SET status = 'cancelled', finished_at = now(), error = CAST(:e AS jsonb)"
                " WHERE (id = :id OR parent_id = :id) AND status IN ('queued', 'running') RETURNING id"),
                {"id": task_id, "e": json.dumps(error)})).scalars().all()
        return [str(i) for i in ended]

    async def dead_letter(self, namespace: str, task_id: str) -> Task:
        """A task that failed for good; NotFound or Conflict otherwise."""
        async with self.sessions() as s:
            t = (await s.execute(select(Task).where(Task.id == task_id, Task.namespace == namespace))).scalar()
        if t is None:
            raise NotFound(f"no task with id {task_id!r}")
        if t.kind != "function" or t.status not in ("failed", "timed_out") or t.parent_id is not None:
            raise Conflict(f"task {task_id} is not a dead letter (status {t.status}); pipeline runs are resumed "
                           "with POST /v1/tasks/{id}/resume")
        return t

    async def requeue_dead_letter(self, t: Task, change: Change, owner: str) -> int:
        """Queue a dead letter as its next attempt (its last one kept in task_attempts) held by replica `owner`,
        audited in the same transaction; the new attempt number."""
        async with self.engine.begin() as conn:
            moved = (await conn.execute(text(
                "WITH prev AS (UPDATE tasks SET status = 'queued', attempt = attempt + 1, error = NULL, output = NULL,"
                " finished_at = NULL, owner = :owner WHERE id = :id AND status IN ('failed', 'timed_out')"
                " RETURNING attempt) SELECT attempt FROM prev"), {"id": t.id, "owner": owner})).scalar()
            if moved is None:
                raise Conflict(f"task {t.id} changed while being redriven")
            await record(conn, replace(change, detail={**change.detail, "attempt": int(moved)}))
            await conn.execute(text(
                "INSERT INTO task_attempts (task_id, attempt, status, error, started_at, finished_at)"
                " VALUES (:id, :a, :st, CAST(:e AS jsonb), :s, :f)"),
                {"id": t.id, "a": moved - 1, "st": t.status, "e": json.dumps(t.error), "s": t.started_at,
                 "f": t.finished_at or datetime.now(UTC)})
        return int(moved)
