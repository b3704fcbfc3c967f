"""Replica leases: which API replica holds each open task, and taking over the tasks of a replica that died.

Every open task row names its `owner`, the API replica holding it in memory (queued in its dispatcher, running
through it, or a pipeline run whose continuation it keeps). A task's lease is its owner's: the owner renews
one row in `api_replicas` every few seconds for all the tasks it holds, instead of touching each task row.
When a replica's lease has run out (it was killed, or stalled past the lease), another replica claims its
open tasks row by row with `FOR UPDATE SKIP LOCKED` (so two claimers never take the same row and never wait
on each other) and applies the recovery rules: a running function task is requeued as its next attempt if its
version allows a retry, else failed as `ExecutorLost`; queued tasks and open pipeline runs are taken as they
are. The group-commit writer fences on the owner: a replica whose tasks were taken can no longer end them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# the open tasks no live replica holds (with `everyone`: no live shared one), oldest first, locked
_ORPHANS = (
    "SELECT t.id FROM tasks t WHERE t.status IN ('queued', 'running') AND t.owner IS DISTINCT FROM :me"
    " AND NOT EXISTS (SELECT 1 FROM api_replicas r WHERE r.id = t.owner AND r.lease_until >= now()"
    " AND (r.shared OR NOT :everyone)) ORDER BY t.created_at LIMIT :limit FOR UPDATE OF t SKIP LOCKED"
)
_CLAIM = (
    "WITH orphan AS (" + _ORPHANS + ") UPDATE tasks t SET owner = :me FROM orphan WHERE t.id = orphan.id"
    " RETURNING t.id, t.kind, t.status, t.attempt, t.started_at, t.function_id, t.version"
)
_RETRIES = "SELECT function_id, version, COALESCE((config->>'max_retries')::int, 0) FROM function_versions" \
           " WHERE (function_id, version) IN (SELECT * FROM unnest(CAST(:fids AS int[]), CAST(:vers AS int[])))"
QUEUED_COLUMNS = ("SELECT id, namespace, function_name, version, input, extract(epoch from created_at), attempt,"
                  " parent_id, step_index FROM tasks")


@dataclass
class Claimed:
    """What one claim took over: counts of running tasks retried and failed, queued function tasks' rows (oldest
    first, as QUEUED_COLUMNS), and open pipeline runs' ids."""

    retried: int = 0
    failed: int = 0
    queued: list[Any] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.retried or self.failed or self.queued or self.runs)


class ReplicaLeases:
    """One replica's lease (`me`), renewed by the replica's loop, and its claims on orphaned tasks."""

    def __init__(self, engine: AsyncEngine, me: str, lease_s: float, *, shared: bool = True) -> None:
        self.engine = engine
        self.me = me
        self.lease_s = lease_s
        self.shared = shared  # False: this replica runs alone (it is nobody's home, and takes over everything)

    async def renew(self, name: str = "") -> bool:
        """Extend this replica's lease (registering it the first time); False if it had run out before this
        renewal, so other replicas may have claimed its tasks."""
        async with self.engine.begin() as conn:
            lapsed = (await conn.execute(text(
                "SELECT lease_until < now() FROM api_replicas WHERE id = :me FOR UPDATE"), {"me": self.me})).scalar()
            await conn.execute(text(
                "INSERT INTO api_replicas (id, name, lease_until, shared) VALUES (:me, :name, now() + make_interval("
                "secs => :s), :shared) ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until"),
                {"me": self.me, "name": name[:200], "s": self.lease_s, "shared": self.shared})
        return not lapsed

    async def live(self, mature_s: float) -> list[tuple[str, bool]]:
        """The shared replicas whose lease is current (this one included once registered), sorted by id, each
        with whether it has been live for `mature_s`."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT id, started_at <= now() - make_interval(secs => :m) FROM api_replicas"
                " WHERE lease_until >= now() AND shared ORDER BY id"), {"m": mature_s})).all()
        return [(str(r[0]), bool(r[1])) for r in rows]

    async def release(self) -> None:
        """End this replica's lease now (a clean shutdown that drained its tasks)."""
        async with self.engine.begin() as conn:
            await conn.execute(text("DELETE FROM api_replicas WHERE id = :me"), {"me": self.me})

    async def forget_lapsed(self, older_than_s: float = 3600.0) -> None:
        """Drop the rows of replicas whose lease ran out long ago (their tasks were claimed since)."""
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "DELETE FROM api_replicas WHERE lease_until < now() - make_interval(secs => :s)"),
                {"s": older_than_s})

    async def claim(self, lost: dict[str, Any], *, everyone: bool = False, limit: int = 5000) -> Claimed:
        """Take over open tasks whose owner's lease ran out (with `everyone`, also those of replicas that ran
        alone, whose leases may not have run out yet: the sole replica starting after a previous process) and
        apply the recovery rules, in one transaction."""
        out = Claimed()
        async with self.engine.begin() as conn:
            rows = (await conn.execute(text(_CLAIM), {"me": self.me, "everyone": everyone, "limit": limit})).all()
            if not rows:
                return out
            running = [r for r in rows if r.kind == "function" and r.status == "running"]
            allowed = await _max_retries(conn, running)
            retry = [r for r in running if r.attempt <= allowed.get((r.function_id, r.version), 0)]
            fail = [r for r in running if r.attempt > allowed.get((r.function_id, r.version), 0)]
            lost_err = json.dumps(lost)
            if retry:
                await conn.execute(text(
                    "INSERT INTO task_attempts (task_id, attempt, status, error, started_at, finished_at)"
                    " VALUES (:id, :a, 'failed', CAST(:e AS jsonb), :s, now())"),
                    [{"id": r.id, "a": r.attempt, "e": lost_err, "s": r.started_at} for r in retry])
                await conn.execute(text("UPDATE tasks SET status = 'queued', attempt = attempt + 1 WHERE id = :id"),
                                   [{"id": r.id} for r in retry])
            if fail:
                await conn.execute(text(
                    "UPDATE tasks SET status = 'failed', finished_at = now(), error = CAST(:e AS jsonb)"
                    " WHERE id = :id"), [{"id": r.id, "e": lost_err} for r in fail])
            failed = {r.id for r in fail}
            queued = [r.id for r in rows if r.kind == "function" and r.id not in failed]
            if queued:
                out.queued = list((await conn.execute(text(
                    QUEUED_COLUMNS + " WHERE id = ANY(CAST(:ids AS text[])) ORDER BY created_at"),
                    {"ids": queued})).all())
            out.runs = [str(r.id) for r in rows if r.kind == "pipeline"]
        out.retried, out.failed = len(retry), len(fail)
        return out

    async def handed(self, ids: Sequence[str]) -> list[Any]:
        """Queued function tasks handed to this replica (rows as QUEUED_COLUMNS, oldest first)."""
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(
                QUEUED_COLUMNS + " WHERE id = ANY(CAST(:ids AS text[])) AND owner = :me AND status = 'queued'"
                " AND kind = 'function' ORDER BY created_at"), {"ids": list(ids), "me": self.me})).all())

    async def queued_ids(self, older_than_s: float, limit: int = 20000) -> list[str]:
        """The ids of queued function tasks this replica owns, queued longer than `older_than_s` (the caller
        picks out those it does not hold in memory: hand-offs whose notice was lost)."""
        async with self.engine.connect() as conn:
            return [str(i) for i in (await conn.execute(text(
                "SELECT id FROM tasks WHERE owner = :me AND status = 'queued' AND kind = 'function'"
                " AND created_at < now() - make_interval(secs => :s) ORDER BY created_at LIMIT :n"),
                {"me": self.me, "s": older_than_s, "n": limit})).scalars().all()]


async def _max_retries(conn: Any, running: list[Any]) -> dict[tuple[int, int], int]:
    """Each running task's version's max_retries, by (function id, version)."""
    keys = sorted({(r.function_id, r.version) for r in running if r.function_id is not None})
    if not keys:
        return {}
    rows = (await conn.execute(text(_RETRIES), {"fids": [k[0] for k in keys], "vers": [k[1] for k in keys]})).all()
    return {(int(f), int(v)): int(n) for f, v, n in rows}
