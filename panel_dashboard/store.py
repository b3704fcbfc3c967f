"""DataStore: the one poller per process and the cache every browser session reads.

`start()` schedules `poll` (every second) and `poll_metrics` (every 5 s, as DuckDB aggregates cost
more) with `pn.state.schedule_task`, idempotent by name, so one poller per process however many
sessions open. Each poll replaces `snapshot` with a new frozen Snapshot;
sessions never call the API, they read `snapshot`. Per-function chart data is fetched only for
functions some session has asked for with `watch()` in the last WATCH_TTL_S seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from panel_dashboard.client import ApiClient, ApiUnavailable, RouteMissing

log = logging.getLogger(__name__)

Record = dict[str, Any]

POLL_PERIOD_S = 1.0
METRICS_EVERY_S = 5.0
WATCH_TTL_S = 30.0
EXECUTIONS_LIMIT = 50
CHART_LIMIT = 200
NOTIFICATIONS_LIMIT = 20
MAX_CONCURRENT = 4


@dataclass(frozen=True)
class Snapshot:
    """What the last polls saw; `None` for a part means its route is missing or failing."""

    functions: list[Record] = field(default_factory=list)
    metrics: dict[str, Record | None] = field(default_factory=dict)
    tasks: list[Record] = field(default_factory=list)
    alerts: list[Record] | None = None
    silences: list[Record] | None = None
    notifications: list[Record] | None = None
    function_tasks: dict[str, list[Record]] = field(default_factory=dict)
    anomalies: dict[str, list[Record] | None] = field(default_factory=dict)
    last_ok: datetime | None = None
    error: str | None = None
    version: int = 0


class DataStore:
    """Polls the API once per POLL_PERIOD_S for the whole process and caches the result."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.snapshot = Snapshot()
        self._watched: dict[str, float] = {}
        self._metrics: dict[str, Record | None] = {}
        self._busy = False
        self._metrics_busy = False
        self._metrics_task: asyncio.Task[None] | None = None
        self._sem = asyncio.Semaphore(MAX_CONCURRENT)

    @property
    def api_url(self) -> str:
        """The API base URL shown in the header."""
        return self.client.config.url

    def start(self) -> None:
        """Schedule the global poller on the server's event loop (once per process)."""
        import panel as pn

        # Panel runs coroutine callbacks on its event loop; its stub only admits sync ones.
        cb = cast(Callable[[], None], self.poll)
        pn.state.schedule_task("cloudfn-dashboard-poll", cb, period=f"{POLL_PERIOD_S:g}s")
        metrics_cb = cast(Callable[[], None], self.poll_metrics)
        pn.state.schedule_task("cloudfn-dashboard-metrics", metrics_cb, period=f"{METRICS_EVERY_S:g}s")

    def watch(self, function: str) -> None:
        """Ask the poller to fetch chart data for FUNCTION (a session showing it calls this each refresh)."""
        self._watched[function] = time.monotonic()

    async def poll(self) -> None:
        """One poll; skipped if the previous one is still running."""
        if self._busy:
            return
        self._busy = True
        try:
            self.snapshot = await self._poll_once(self.snapshot)
        except ApiUnavailable as exc:
            self.snapshot = dataclasses.replace(self.snapshot, error=str(exc), version=self.snapshot.version + 1)
        except Exception as exc:  # a poller that dies stops every session's updates
            log.exception("dashboard poll failed")
            self.snapshot = dataclasses.replace(self.snapshot, error=f"poll failed: {exc!r}",
                                                version=self.snapshot.version + 1)
        finally:
            self._busy = False

    async def _poll_once(self, prev: Snapshot) -> Snapshot:
        """Fetch every part; required parts raise ApiUnavailable, optional ones become None."""
        now = time.monotonic()
        self._watched = {f: t for f, t in self._watched.items() if now - t < WATCH_TTL_S}
        watched = sorted(self._watched)
        fns_body, tasks_body, alerts, silences, notifications, charts = await asyncio.gather(
            self.client.get("/v1/functions"),
            self.client.get("/v1/tasks", {"limit": EXECUTIONS_LIMIT}),
            self._optional_list("/v1/alerts", "alerts", {"state": "firing"}),
            self._optional_list("/v1/silences", "items", {}),
            self._optional_list("/v1/alert-notifications", "notifications", {"limit": NOTIFICATIONS_LIMIT}),
            asyncio.gather(*(self._chart(f) for f in watched)),
        )
        functions: list[Record] = list(fns_body.get("functions", []))
        if {f["name"] for f in functions} - set(self._metrics) and not self._metrics_busy:
            # A new function: fetch its figures now rather than at the next 5 s tick.
            self._metrics_task = asyncio.ensure_future(self.poll_metrics([f["name"] for f in functions]))
        metrics = {f["name"]: self._metrics.get(f["name"]) for f in functions}
        return Snapshot(
            functions=functions, metrics=metrics, tasks=list(tasks_body.get("tasks", [])), alerts=alerts,
            silences=silences, notifications=notifications,
            function_tasks={f: t for f, (t, _) in zip(watched, charts, strict=True)},
            anomalies={f: a for f, (_, a) in zip(watched, charts, strict=True)},
            last_ok=datetime.now(UTC), error=None, version=prev.version + 1)

    async def poll_metrics(self, names: list[str] | None = None) -> None:
        """Refresh the last-hour figures of NAMES (default: every known function); a task of its own."""
        if self._metrics_busy:
            return
        self._metrics_busy = True
        try:
            if names is None:
                names = [f["name"] for f in self.snapshot.functions]
            got = await asyncio.gather(*(self._metrics_of(n) for n in names), return_exceptions=True)
            self._metrics = {n: (m if isinstance(m, dict) else None) for n, m in zip(names, got, strict=True)}
        finally:
            self._metrics_busy = False

    async def _chart(self, function: str) -> tuple[list[Record], list[Record] | None]:
        """A function's newest tasks and its anomalies (None if that route is missing)."""
        async with self._sem:
            body = await self.client.get("/v1/tasks", {"function": function, "limit": CHART_LIMIT})
        anomalies = await self._optional_list("/v1/anomalies", "anomalies", {"function": function})
        return list(body.get("tasks", [])), anomalies

    async def _metrics_of(self, function: str) -> Record | None:
        """Last-hour aggregates for FUNCTION, or None if the route is missing or failing."""
        async with self._sem:
            try:
                return await self.client.get_optional(f"/v1/functions/{function}/metrics", {"window": "1h"})
            except RouteMissing:
                return None

    async def _optional_list(self, path: str, key: str, params: dict[str, Any]) -> list[Record] | None:
        """The list under KEY of an optional route, or None if it is missing or failing."""
        async with self._sem:
            try:
                body = await self.client.get_optional(path, params)
            except RouteMissing:
                return None
        items = body.get(key)
        return list(items) if isinstance(items, list) else None
