"""Group commit: many requests' task inserts and many executions' results share one transaction.

A request's 202 is sent only after its task row is committed (nothing accepted is lost), yet the
database sees one commit per batch instead of one per task. The writer owns one psycopg connection and
sends each flush (BEGIN, one statement per kind of row, COMMIT) as a single pipeline: one round trip.

Each writer writes for one API replica (`owner`): new rows name it (or the replica a task is handed to), and
running marks and results only change rows the replica still owns (core.db.leases: a replica whose lease ran
out may have lost its tasks to another). With `notify`, the same transaction announces ended tasks on
ENDED_CHANNEL and hand-offs on HANDOFF_CHANNEL, so other replicas' long-polls and dispatchers learn of them at
commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import psycopg

from core.db.engine import libpq_url
from core.db.exact_text import storable_json, store_text
from serve_app.results.completions import Completions

log = logging.getLogger(__name__)
RUNNING_DELAY_S = 0.05
ENDED_CHANNEL = "cloudfn_ended"  # payload: comma-separated ids of tasks whose terminal result was committed
HANDOFF_CHANNEL = "cloudfn_handoff"  # payload: "<replica>|<id>,<id>,…": queued tasks handed to that replica
NOTIFY_IDS = 150  # ids per notification (PostgreSQL caps a payload at 8,000 bytes)
NOTIFY = "SELECT pg_notify(%(channel)s, %(payload)s)"


def ts(epoch: float | None) -> datetime | None:
    """Epoch seconds → aware datetime."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


@dataclass
class TaskInsert:
    """A new task row."""

    id: str
    namespace: str
    function_id: int | None
    function_name: str
    version: int | None
    input_json: str | None
    created_at: float
    kind: str = "function"
    status: str = "queued"
    idempotency_key: str | None = None
    parent_id: str | None = None
    step_index: int | None = None
    plan: list[dict[str, Any]] | None = None
    owner: str | None = None  # the replica that will run it, when not the writer's own (a hand-off)
    internal: bool = False  # queued with insert_nowait: its work already started, so it is written come what may


@dataclass
class TaskResult:
    """A terminal outcome for a task (and its metrics row when it ran)."""

    id: str
    status: str
    output_json: str | None
    error: dict[str, Any] | None
    logs: str | None
    started_at: float | None
    finished_at: float
    attempt: int
    metrics: dict[str, Any] | None  # execution_metrics row values, None if it never ran
    retry_delay_s: float | None = None  # set: this attempt failed and the task is queued again after the delay
    handler_ms: float | None = None  # what the child says its handler took (batching of its own invocations only)


def _rows(columns: str) -> str:
    """`json_to_recordset(CAST(%(rows)s AS json)) AS r(a t, ...)`: one statement writes a whole batch, sent as a
    single JSON parameter (far cheaper to encode than one array parameter per column)."""
    return f"json_to_recordset(CAST(%(rows)s AS json)) AS r({columns})"


INSERT_TASK = (
    "INSERT INTO tasks (id, namespace, function_id, function_name, version, kind, status, input, attempt,"
    " idempotency_key, parent_id, step_index, plan, created_at, started_at, owner)"
    " SELECT r.id, r.namespace, r.function_id, r.function_name, r.version, r.kind, r.status, CAST(r.input AS json),"
    " 1, r.idempotency_key, r.parent_id, r.step_index, CAST(r.plan AS jsonb), to_timestamp(r.created_at),"
    " to_timestamp(r.started_at), r.owner FROM " + _rows(
        "id text, namespace text, function_id integer, function_name text, version integer, kind text, status text,"
        " input text, idempotency_key text, parent_id text, step_index integer, plan text, created_at float8,"
        " started_at float8, owner text")
)
MARK_RUNNING = (
    "UPDATE tasks t SET status = 'running', started_at = to_timestamp(r.started_at) FROM "
    + _rows("id text, started_at float8") + " WHERE t.id = r.id AND t.status = 'queued' AND t.owner = %(owner)s"
)
FINISH_TASK = (
    "UPDATE tasks t SET status = r.status, output = CAST(r.output AS json), error = CAST(r.error AS jsonb),"
    " logs = r.logs, started_at = COALESCE(to_timestamp(r.started_at), t.started_at),"
    " finished_at = to_timestamp(r.finished_at), attempt = r.attempt FROM "
    + _rows("id text, status text, output text, error text, logs text, started_at float8, finished_at float8,"
              " attempt integer")
    + " WHERE t.id = r.id AND t.status NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled')"
    " AND t.owner = %(owner)s"
)
RECORD_ATTEMPT = (
    "INSERT INTO task_attempts (task_id, attempt, status, error, started_at, finished_at, retry_delay_s)"
    " VALUES (%(id)s, %(attempt)s, %(status)s, CAST(%(error)s AS jsonb), %(started_at)s, %(finished_at)s,"
    " %(retry_delay_s)s)"
)
REQUEUE_TASK = (
    "UPDATE tasks SET status = 'queued', attempt = %(attempt)s + 1 WHERE id = %(id)s"
    " AND status NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled') AND owner = %(owner)s"
)
INSERT_METRIC = (
    "INSERT INTO execution_metrics (task_id, namespace, function, version, attempt, status, started_at,"
    " finished_at, duration_ms, cpu_ms, peak_memory_mb, queue_ms, cold_start, error_type, input_bytes,"
    " output_bytes, cpu_wait_ms, node) SELECT r.task_id, r.namespace, r.function, r.version, r.attempt, r.status,"
    " to_timestamp(r.started_at), to_timestamp(r.finished_at), r.duration_ms, r.cpu_ms, r.peak_memory_mb,"
    " r.queue_ms, r.cold_start, r.error_type, r.input_bytes, r.output_bytes, coalesce(r.cpu_wait_ms, 0), r.node FROM "
    + _rows("task_id text, namespace text, function text, version integer, attempt integer, status text,"
              " started_at float8, finished_at float8, duration_ms float8, cpu_ms float8, peak_memory_mb float8,"
              " queue_ms float8, cold_start boolean, error_type text, input_bytes integer, output_bytes integer,"
              " cpu_wait_ms float8, node text")
    + " ON CONFLICT (task_id, attempt) DO NOTHING"
)


def rows_param(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The parameter of a `json_to_recordset` statement."""
    return {"rows": json.dumps(rows, separators=(",", ":"))}


class GroupCommitWriter:
    """Batches task inserts, running marks and results into one transaction per flush."""

    def __init__(self, database_url: str, owner: str, *, max_batch: int = 500, notify: bool = False,
                 on_committed: Callable[[list[TaskResult]], Awaitable[None] | None] | None = None,
                 completions: Completions | None = None, on_flush: Callable[[int], None] | None = None) -> None:
        self.dsn = libpq_url(database_url)
        self.owner = owner  # the replica this writer writes for
        self.notify = notify  # announce ended tasks and hand-offs to other replicas
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.on_flush = on_flush  # rows written by one committed flush
        self.max_batch = max_batch
        self.on_committed = on_committed
        self.completions = completions  # woken with the ids of terminal results once they are committed
        self._inserts: list[tuple[TaskInsert, asyncio.Future[None]]] = []
        self._running: dict[str, float] = {}
        self._results: list[tuple[TaskResult, asyncio.Future[None] | None]] = []
        self._wake = asyncio.Event()
        self._running_timer: asyncio.TimerHandle | None = None
        self._marks_due = False
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False
        self._backoff_s = 0.0  # while the database is unreachable: the wait before the next try

    def start(self) -> None:
        """Start the flush loop on the running event loop."""
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def insert(self, row: TaskInsert) -> None:
        """Insert a task row; returns once it is committed (raises if the insert failed)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inserts.append((row, fut))
        self._wake.set()
        await fut

    def insert_nowait(self, row: TaskInsert) -> asyncio.Future[None]:
        """Queue a task row for the next flush without waiting for its commit (for internal continuations,
        whose recovery does not depend on the row: see Pipelines.recover)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inserts.append((replace(row, internal=True), fut))
        self._wake.set()
        return fut

    def mark_running(self, task_id: str, at: float) -> None:
        """Record that a task was handed to an executor: written with the next flush, or after RUNNING_DELAY_S
        at the latest (a task that finishes before that goes straight from queued to its terminal status)."""
        self._running[task_id] = at
        if self._running_timer is None:
            self._running_timer = asyncio.get_running_loop().call_later(RUNNING_DELAY_S, self._wake_for_running)

    def _wake_for_running(self) -> None:
        self._running_timer = None
        self._marks_due = True
        self._wake.set()

    def _take_due_marks(self) -> dict[str, float]:
        """Running marks older than RUNNING_DELAY_S; re-arm the timer for the rest."""
        self._marks_due = False
        now = time.time()
        due = {k: v for k, v in self._running.items() if now - v >= RUNNING_DELAY_S}
        for k in due:
            del self._running[k]
        if self._running and self._running_timer is None:
            self._running_timer = asyncio.get_running_loop().call_later(RUNNING_DELAY_S, self._wake_for_running)
        return due

    def finish(self, result: TaskResult) -> asyncio.Future[None]:
        """Queue a result (terminal, or a retried attempt); the future resolves once it is committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running.pop(result.id, None)
        self._results.append((result, fut))
        self._wake.set()
        return fut

    async def close(self) -> None:
        """Flush what is pending and stop."""
        self._closed = True
        self._wake.set()
        if self._loop_task:
            await self._loop_task
        if self._conn is not None:
            await self._conn.close()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._inserts or self._results or self._marks_due or (self._closed and self._running):
                await self._flush_once()
            if self._closed:
                return

    async def _flush_once(self) -> None:
        inserts, self._inserts = self._inserts, []  # all of them: a result must never precede its row
        results, self._results = self._results[: self.max_batch], self._results[self.max_batch:]
        if self._closed:
            running, self._running = self._running, {}
        else:
            running = self._take_due_marks()
        finished = {r.id for r, _ in results}
        try:
            await self._commit(self._statements(inserts, running, results, finished))
        except psycopg.OperationalError as exc:  # unreachable (e.g. restarting): keep everything, try again
            await self._hold_back(inserts, running, results, exc)
            return
        except Exception as exc:  # a bad batch must not lose the good rows: retry one by one
            log.warning("batch write failed (%s); retrying row by row", exc)
            await self._write_singly(inserts, running, results, finished)
            return
        self._backoff_s = 0.0
        if self.on_flush is not None:
            self.on_flush(len(inserts) + len(running) + len(results))
        for _, fut in inserts:
            if not fut.done():
                fut.set_result(None)
        self._resolve(results)

    async def _hold_back(self, inserts: list[tuple[TaskInsert, asyncio.Future[None]]], running: dict[str, float],
                         results: list[tuple[TaskResult, asyncio.Future[None] | None]], exc: Exception) -> None:
        """The database cannot be reached: a request's own insert fails (its caller gets a 503 and nothing was
        promised); rows of work already started, running marks and results go back to the front of the queue and
        are written once the database answers again (nothing accepted is lost); then wait a growing backoff."""
        self._backoff_s = min(2.0, max(0.05, self._backoff_s * 2))
        log.warning("database unreachable (%s); %d results held back, next try in %.2f s", exc, len(results),
                    self._backoff_s)
        kept = []
        for row, fut in inserts:
            if row.internal:
                kept.append((row, fut))
            elif not fut.done():
                fut.set_exception(exc)
        self._inserts[:0] = kept
        self._results[:0] = results
        for task_id, at in running.items():
            self._running.setdefault(task_id, at)
        if running:
            self._marks_due = True
        await asyncio.sleep(self._backoff_s)

    async def _commit(self, statements: list[tuple[str, Any]]) -> None:
        """Run statements in one transaction, pipelined (one round trip); a broken connection is replaced."""
        if not statements:
            return
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        conn = self._conn
        try:
            async with conn.pipeline(), conn.transaction():
                for sql, params in statements:
                    if isinstance(params, list):
                        await conn.cursor().executemany(sql, params)
                    else:
                        await conn.execute(sql, params)
        except psycopg.OperationalError:
            await conn.close()
            raise

    def _statements(self, inserts: list[tuple[TaskInsert, asyncio.Future[None]]], running: dict[str, float],
                    results: list[tuple[TaskResult, asyncio.Future[None] | None]],
                    finished: set[str]) -> list[tuple[str, Any]]:
        owner = {"owner": self.owner}
        out: list[tuple[str, Any]] = []
        if inserts:
            out.append((INSERT_TASK, rows_param([_insert_params(r, self.owner) for r, _ in inserts])))
        marks = [{"id": k, "started_at": v} for k, v in running.items() if k not in finished]
        if marks:
            out.append((MARK_RUNNING, {**rows_param(marks), **owner}))
        final = [_finish_params(r) for r, _ in results if r.retry_delay_s is None]
        if final:
            out.append((FINISH_TASK, {**rows_param(final), **owner}))
        retried = [{**_attempt_params(r), **owner} for r, _ in results if r.retry_delay_s is not None]
        if retried:
            out += [(RECORD_ATTEMPT, retried), (REQUEUE_TASK, retried)]
        metrics = [_metric_params(r.metrics) for r, _ in results if r.metrics is not None]
        if metrics:
            out.append((INSERT_METRIC, rows_param(metrics)))
        if self.notify:
            out += _notices(ENDED_CHANNEL, "", [p["id"] for p in final])
            handed: dict[str, list[str]] = {}
            for r, _ in inserts:
                if r.owner is not None and r.owner != self.owner:
                    handed.setdefault(r.owner, []).append(r.id)
            for to, ids in handed.items():
                out += _notices(HANDOFF_CHANNEL, to + "|", ids)
        return out

    async def _write_singly(self, inserts: list[tuple[TaskInsert, asyncio.Future[None]]],
                            running: dict[str, float],
                            results: list[tuple[TaskResult, asyncio.Future[None] | None]],
                            finished: set[str]) -> None:
        for row, fut in inserts:
            try:
                await self._commit(self._statements([(row, fut)], {}, [], set()))
                fut.set_result(None)
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
        for item in results:
            for attempt in _fallbacks(item[0]):
                try:
                    await self._commit(self._statements([], {}, [(attempt, item[1])], set()))
                    break
                except Exception:
                    log.exception("could not persist result of task %s as %s", item[0].id, attempt.status)
        if running:
            try:
                await self._commit(self._statements([], running, [], finished))
            except Exception:
                log.exception("could not mark tasks running")
        self._resolve(results)

    def _resolve(self, results: list[tuple[TaskResult, asyncio.Future[None] | None]]) -> None:
        for _, fut in results:
            if fut is not None and not fut.done():
                fut.set_result(None)
        if results and self.completions is not None:
            self.completions.publish(r.id for r, _ in results if r.retry_delay_s is None)
        if results and self.on_committed is not None:
            maybe = self.on_committed([r for r, _ in results])
            if asyncio.iscoroutine(maybe):
                asyncio.get_running_loop().create_task(maybe)


def _fallbacks(r: TaskResult) -> list[TaskResult]:
    """A result as it came, then as a failure that names why it could not be stored (with, then without its
    metrics): one result PostgreSQL refuses must never leave its task open."""
    failed = replace(r, status="failed", output_json=None, logs=None, retry_delay_s=None, error={
        "type": "ResultNotStorable", "message": "the task's result could not be stored", "stack": []})
    return [r, failed, replace(failed, metrics=None)]


def _notices(channel: str, prefix: str, ids: list[str]) -> list[tuple[str, Any]]:
    """`pg_notify` statements announcing `ids` on `channel`, NOTIFY_IDS per payload."""
    return [(NOTIFY, {"channel": channel, "payload": prefix + ",".join(ids[i:i + NOTIFY_IDS])})
            for i in range(0, len(ids), NOTIFY_IDS)]


def _insert_params(r: TaskInsert, owner: str) -> dict[str, Any]:
    return {"owner": r.owner or owner, "id": r.id, "namespace": r.namespace, "function_id": r.function_id,
            "function_name": r.function_name, "version": r.version, "kind": r.kind, "status": r.status,
            "input": r.input_json, "idempotency_key": r.idempotency_key, "parent_id": r.parent_id,
            "step_index": r.step_index, "plan": None if r.plan is None else json.dumps(r.plan),
            "created_at": r.created_at, "started_at": r.created_at if r.status == "running" else None}


def _finish_params(r: TaskResult) -> dict[str, Any]:
    return {"id": r.id, "status": r.status, "output": r.output_json,
            "error": None if r.error is None else storable_json(r.error), "logs": store_text(r.logs),
            "started_at": r.started_at, "finished_at": r.finished_at, "attempt": r.attempt}


def _attempt_params(r: TaskResult) -> dict[str, Any]:
    return {"id": r.id, "status": r.status, "error": None if r.error is None else storable_json(r.error),
            "started_at": ts(r.started_at), "finished_at": ts(r.finished_at), "attempt": r.attempt,
            "retry_delay_s": r.retry_delay_s}


_METRIC_COLUMNS = ("task_id", "namespace", "function", "version", "attempt", "status", "started_at", "finished_at",
                   "duration_ms", "cpu_ms", "peak_memory_mb", "queue_ms", "cold_start", "error_type", "input_bytes",
                   "output_bytes", "cpu_wait_ms", "node")


def _metric_params(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in _METRIC_COLUMNS}
