"""Task records without polling: coalesced single reads, batch lookups and long-poll waits.

Single reads that arrive together share one query (like the writer's group commit, for reads): a request
joins the pending batch of its namespace and at most `max_inflight` queries run at a time, so under load one
round trip answers many requests. A long-poll registers with `Completions` before it reads the row, then
waits for the writer's wake-up or its deadline, and answers with the record as it is then.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from core.db.tasks import TaskStore
from core.errors import InvalidInput, NotFound
from core.models import TASK_ID_PATTERN
from serve_app.results.completions import Completions

MAX_LOOKUP_IDS = 1000  # POST /v1/tasks/lookup
MAX_QUERY_IDS = 100  # GET /v1/tasks?ids=: a longer URL outgrows proxies' default buffers
MAX_TASK_WAIT_S = 60.0
TERMINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
TASK_ID_RE = re.compile(TASK_ID_PATTERN)


def parse_wait(raw: str) -> float:
    """The `wait` query parameter of a task read: seconds, 0 to 60."""
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not 0 <= wait <= MAX_TASK_WAIT_S:  # NaN fails too
        raise InvalidInput(f"wait must be a number of seconds from 0 to {MAX_TASK_WAIT_S:g}, not {raw!r}")
    return wait


def check_ids(ids: list[Any], limit: int, where: str) -> list[str]:
    """Task ids as given, each checked; InvalidInput naming the first bad one or the count."""
    if len(ids) > limit:
        raise InvalidInput(f"{where} holds {len(ids)} ids; at most {limit} per request")
    for i, task_id in enumerate(ids):
        if not isinstance(task_id, str) or not TASK_ID_RE.match(task_id):
            raise InvalidInput(f"{where}[{i}] = {task_id!r} is not a task id (a string matching {TASK_ID_PATTERN})")
    return ids


def ids_of_query(raw: str) -> list[str]:
    """`ids=ID1,ID2,…` (empty items ignored) → checked ids."""
    return check_ids([p.strip() for p in raw.split(",") if p.strip()], MAX_QUERY_IDS, "ids")


def ids_of_body(body: Any) -> list[str]:
    """`{"ids": [ID, …]}` → checked ids."""
    if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
        raise InvalidInput('send a JSON object {"ids": ["<task id>", ...]} (at most 1000 ids)')
    extra = set(body) - {"ids"}
    if extra:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(extra))}; send only \"ids\"")
    return check_ids(body["ids"], MAX_LOOKUP_IDS, "ids")


def ids_of_json(body: bytes) -> list[str]:
    """The body of `POST /v1/tasks/lookup` → checked ids."""
    try:
        parsed = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    return ids_of_body(parsed)


class TaskReads:
    """The read side of task records for the API routes."""

    def __init__(self, store: TaskStore, completions: Completions, *, max_inflight: int = 2) -> None:
        self.store = store
        self.completions = completions
        self.max_inflight = max_inflight
        self._pending: dict[str, dict[str, list[asyncio.Future[dict[str, Any] | None]]]] = {}
        self._flushers = 0

    async def get(self, namespace: str, task_id: str) -> dict[str, Any]:
        """One record (coalesced with concurrent reads); NotFound for an unknown id."""
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(namespace, {}).setdefault(task_id, []).append(fut)
        if self._flushers < self.max_inflight:
            self._flushers += 1
            asyncio.get_running_loop().create_task(self._flush())
        rec = await fut
        if rec is None:
            raise NotFound(f"no task with id {task_id!r}")
        return rec

    async def _flush(self) -> None:
        """Answer pending reads, a namespace's batch per query, until none are left."""
        try:
            while self._pending:
                namespace = next(iter(self._pending))
                wanted = self._pending.pop(namespace)
                if len(wanted) > MAX_LOOKUP_IDS:  # leave the rest for the next query
                    keep = list(wanted)[MAX_LOOKUP_IDS:]
                    self._pending.setdefault(namespace, {}).update({k: wanted.pop(k) for k in keep})
                try:
                    found = await self.store.records(namespace, list(wanted))
                except Exception as exc:
                    for futs in wanted.values():
                        for fut in futs:
                            if not fut.done():
                                fut.set_exception(exc)
                    continue
                for task_id, futs in wanted.items():
                    for fut in futs:
                        if not fut.done():
                            fut.set_result(found.get(task_id))
        finally:
            self._flushers -= 1

    async def lookup(self, namespace: str, ids: list[str]) -> list[dict[str, Any]]:
        """Records of checked ids in request order; unknown ids (or another namespace's) left out."""
        found = await self.store.records(namespace, ids)
        return [found[task_id] for task_id in ids if task_id in found]

    async def wait(self, namespace: str, task_id: str, wait_s: float) -> dict[str, Any]:
        """The record as soon as the task has ended, else as it is after `wait_s` seconds."""
        if wait_s <= 0:
            return await self.get(namespace, task_id)
        ended = self.completions.watch(task_id)  # before the read: a commit after it wakes us
        try:
            rec = await self.get(namespace, task_id)
            if rec["status"] in TERMINAL:
                return rec
            await asyncio.wait((ended,), timeout=wait_s)
            return await self.get(namespace, task_id)
        finally:
            self.completions.unwatch(task_id, ended)
