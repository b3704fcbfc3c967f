"""DataStore: one logged-in tenant's poller and the cache every browser session of that tenant reads.

`start()` runs `poll` (every POLL_PERIOD_S) and `poll_metrics` (every 5 s, as DuckDB aggregates cost more) as one
asyncio task on the server's loop, `stop()` cancels it; `pollers.Pollers` keeps one store per tenant and role.
Each poll replaces `snapshot` with a new frozen Snapshot; sessions never poll the API, they read `snapshot`.
Per-function chart data is fetched only for functions some session has asked for with `watch()` in the last
WATCH_TTL_S seconds, and a window's time series (DuckDB over the lake) only while a session `watch_series()` it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from panel_dashboard.client import ApiClient, ApiUnavailable, RouteMissing

log = logging.getLogger(__name__)

Record = dict[str, Any]

POLL_PERIOD_S = 0.5
METRICS_EVERY_S = 5.0
WATCH_TTL_S = 30.0
EXECUTIONS_LIMIT = 50
CHART_LIMIT = 200
NOTIFICATIONS_LIMIT = 20
MAX_CONCURRENT = 4
SERIES_TIMEOUT_S = 60.0  # a week of a busy function is a DuckDB scan of the lake: seconds on a loaded host
WINDOWS = {"15m": "10s", "1h": "30s", "6h": "3m", "24h": "10m", "7d": "1h"}  # window -> bucket (≤ 170 points)


def no_runs(function: str) -> Record:
    """The last hour's figures of a function that did not run in it."""
    return {"function": function, "count": 0, "errors": 0, "error_rate": None, "duration_ms": {}}


def bucket_for(window: str) -> str:
    """The bucket width the console uses for WINDOW."""
    return WINDOWS.get(window, "1m")


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
    series: dict[tuple[str, str], list[Record]] = field(default_factory=dict)
    series_errors: dict[tuple[str, str], str] = field(default_factory=dict)
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
        self._series_watched: dict[tuple[str, str], float] = {}
        self._series: dict[tuple[str, str], list[Record]] = {}
        self._series_fetching: set[tuple[str, str]] = set()
        self._series_errors: dict[tuple[str, str], str] = {}
        self._runner: asyncio.Task[None] | None = None

    @property
    def api_url(self) -> str:
        """The API base URL shown in the header."""
        return self.client.config.url

    def start(self) -> None:
        """Start polling on the running event loop (the server's); idempotent."""
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop polling and close the connection pool (the last session of this tenant and role ended)."""
        if self._runner is not None:
            self._runner.cancel()
            self._runner = None
        asyncio.get_running_loop().create_task(self.client.aclose())

    def retire(self, old: ApiClient) -> None:
        """Close a client this store no longer uses (its key's session logged out)."""
        asyncio.get_running_loop().create_task(old.aclose())

    @property
    def running(self) -> bool:
        """Whether the poller is running."""
        return self._runner is not None and not self._runner.done()

    async def _run(self) -> None:
        """Poll every POLL_PERIOD_S and refresh metrics and series every METRICS_EVERY_S, until cancelled."""
        last_metrics = -METRICS_EVERY_S
        while True:
            started = time.monotonic()
            await self.poll()
            if started - last_metrics >= METRICS_EVERY_S:
                last_metrics = started
                asyncio.ensure_future(self.poll_metrics())
            await asyncio.sleep(max(0.05, POLL_PERIOD_S - (time.monotonic() - started)))

    def watch_series(self, function: str, window: str) -> None:
        """Ask for FUNCTION's time series over WINDOW (e.g. "1h"); the first ask fetches it at once."""
        key = (function, window)
        first = key not in self._series_watched and key not in self._series_fetching
        self._series_watched[key] = time.monotonic()
        if first:
            # without a running loop (a test drawing a page) the next metrics round fetches it
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(self._fetch_series([key]))

    async def _fetch_series(self, keys: list[tuple[str, str]]) -> None:
        """Fetch the time series of KEYS (function, window) into the cache; failures keep the last one. A key
        already being fetched (a slow week-long scan) is not asked for again meanwhile."""
        keys = [k for k in keys if k not in self._series_fetching]
        self._series_fetching.update(keys)
        try:
            got = await asyncio.gather(*(self._series_of(f, w) for f, w in keys), return_exceptions=True)
        finally:
            self._series_fetching.difference_update(keys)
        for key, pts in zip(keys, got, strict=True):
            if isinstance(pts, list):
                self._series[key] = pts
                self._series_errors.pop(key, None)
            else:
                log.info("time series of %s over %s: %s", key[0], key[1], pts)
                self._series_errors[key] = str(pts) or type(pts).__name__
        # sessions see the new series now rather than at the next poll
        self.snapshot = dataclasses.replace(self.snapshot, series=dict(self._series),
                                            series_errors=dict(self._series_errors),
                                            version=self.snapshot.version + 1)

    async def _series_of(self, function: str, window: str) -> list[Record]:
        """The points of one function's series over WINDOW, with about SERIES_POINTS buckets."""
        async with self._sem:
            body = await self.client.get(f"/v1/functions/{function}/timeseries",
                                         {"window": window, "bucket": bucket_for(window)}, timeout_s=SERIES_TIMEOUT_S)
        return list(body.get("points", []))

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
        fns_body, tasks, alerts, silences, notifications, charts = await asyncio.gather(
            self.client.get("/v1/functions"),
            self._optional_list("/v1/tasks", "tasks", {"limit": EXECUTIONS_LIMIT}),  # a viewer may not read tasks
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
            functions=functions, metrics=metrics, tasks=tasks or [], alerts=alerts,
            silences=silences, notifications=notifications,
            function_tasks={f: t for f, (t, _) in zip(watched, charts, strict=True)},
            anomalies={f: a for f, (_, a) in zip(watched, charts, strict=True)},
            series=dict(self._series), series_errors=dict(self._series_errors), last_ok=datetime.now(UTC),
            error=None, version=prev.version + 1)

    async def poll_metrics(self, names: list[str] | None = None) -> None:
        """Refresh the last-hour figures of NAMES (default: every known function) with one request; a task of
        its own."""
        if self._metrics_busy:
            return
        self._metrics_busy = True
        try:
            if names is None:
                names = [f["name"] for f in self.snapshot.functions]
                now = time.monotonic()
                self._series_watched = {k: t for k, t in self._series_watched.items() if now - t < WATCH_TTL_S}
                self._series = {k: v for k, v in self._series.items() if k in self._series_watched}
                await self._fetch_series(list(self._series_watched))
            figures = await self._every_function_metrics()
            self._metrics = {n: None if figures is None else figures.get(n, no_runs(n)) for n in names}
        finally:
            self._metrics_busy = False

    async def _chart(self, function: str) -> tuple[list[Record], list[Record] | None]:
        """A function's newest tasks and its anomalies (None if that route is missing)."""
        tasks = await self._optional_list("/v1/tasks", "tasks", {"function": function, "limit": CHART_LIMIT})
        anomalies = await self._optional_list("/v1/anomalies", "anomalies", {"function": function})
        return tasks or [], anomalies

    async def _every_function_metrics(self) -> dict[str, Record] | None:
        """Last-hour aggregates of every function with executions, in one request (one lake query), or None if
        that route is missing or failing."""
        async with self._sem:
            try:
                body = await self.client.get_optional("/v1/metrics", {"window": "1h"})
            except (RouteMissing, ApiUnavailable):
                return None
        figures = body.get("functions")
        return dict(figures) if isinstance(figures, dict) else None

    async def _optional_list(self, path: str, key: str, params: dict[str, Any]) -> list[Record] | None:
        """The list under KEY of an optional route, or None if it is missing or failing."""
        async with self._sem:
            try:
                body = await self.client.get_optional(path, params)
            except RouteMissing:
                return None
        items = body.get(key)
        return list(items) if isinstance(items, list) else None
