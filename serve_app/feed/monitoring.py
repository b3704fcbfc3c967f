"""The replica's side of monitoring: every committed result becomes a MetricRecord that feeds Prometheus
counters, a Parquet lake buffer (flushed every few seconds in a thread) and the detector shards."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from analytics.lake import Lake
from analytics.prometheus import PromRegistry
from core.models import MetricRecord
from serve_app.write.writer import TaskResult

log = logging.getLogger(__name__)
DETECT_EVERY_S = 0.2  # batch detector calls: one actor call per shard per tick, not per result batch


class MonitoringFeed:
    """Fans committed results out to Prometheus, the lake and the detectors."""

    def __init__(self, lake: Lake, prom: PromRegistry, *, flush_s: float = 2.0, detectors: list[Any] | None = None,
                 shard_of: Any = None, compacts: Callable[[], bool] = lambda: True) -> None:
        self.lake = lake
        self.compacts = compacts  # whether this replica is the lake's compactor now (one at a time)
        self.prom = prom
        self.flush_s = flush_s
        self.detectors = detectors or []
        self.shard_of = shard_of
        self._pending: list[MetricRecord] = []
        self._to_detect: list[MetricRecord] = []
        self._flushing: list[MetricRecord] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_compact = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="lake-flush")
        self._thread.start()

    def on_results(self, results: list[TaskResult]) -> None:
        """Called after each committed batch of results."""
        records = []
        for r in results:
            if r.metrics is None:
                continue
            try:
                rec = MetricRecord(**r.metrics)
                why = rec.problem()
            except TypeError as exc:
                why = str(exc)
            if why is not None:  # never into the lake, the detectors or alerting; never blocking a batch
                log.warning("metric row of task %s set aside: %s", r.id, why)
                self.prom.rows_set_aside.labels(sink="monitoring").inc()
                continue
            records.append(rec)
        if not records:
            return
        for rec in records:
            self.prom.observe(rec)
        with self._lock:
            self._pending.extend(records)
        if self.detectors:
            with self._lock:
                self._to_detect.extend(records)

    def send_to_detectors(self) -> int:
        """Forward what arrived since the last call, one actor call per shard (fire and forget)."""
        with self._lock:
            batch, self._to_detect = self._to_detect, []
        by_shard: dict[int, list[dict[str, Any]]] = {}
        for rec in batch:
            by_shard.setdefault(self.shard_of(rec.namespace, rec.function), []).append(rec.__dict__)
        for i, recs in by_shard.items():
            self.detectors[i].observe.remote(recs)
        return len(batch)

    def pending(self) -> list[MetricRecord]:
        """Rows not yet in the lake (for queries that must see everything)."""
        with self._lock:
            return self._flushing + self._pending

    def flush(self) -> int:
        """Write buffered rows to the lake now; return how many."""
        with self._lock:
            batch, self._pending = self._pending, []
            self._flushing = batch
        if not batch:
            return 0
        try:
            self.lake.append(batch)
        except OSError:  # the disk or the folder: keep the rows for the next flush
            log.exception("lake append failed; keeping %d rows for the next flush", len(batch))
            with self._lock:
                self._pending = batch + self._pending
                self._flushing = []
            return 0
        except Exception:  # the rows themselves: write the good ones, set aside the ones that fail alone
            log.exception("lake append of %d rows failed; writing them one by one", len(batch))
            for rec in batch:
                try:
                    self.lake.append([rec])
                except Exception:
                    log.exception("lake row of task %s set aside", rec.task_id)
                    self.prom.rows_set_aside.labels(sink="lake").inc()
        with self._lock:
            self._flushing = []
        return len(batch)

    def _loop(self) -> None:
        last_flush = time.monotonic()
        while not self._stop.wait(DETECT_EVERY_S):
            if self.detectors:
                try:
                    self.send_to_detectors()
                except Exception:
                    log.exception("forwarding to the detectors failed")
            if time.monotonic() - last_flush < self.flush_s:
                continue
            last_flush = time.monotonic()
            self.flush()
            if time.monotonic() - self._last_compact > 60 and self.compacts():
                self._last_compact = time.monotonic()
                try:
                    self.lake.compact(time.strftime("%Y-%m-%d", time.gmtime()))
                except Exception:
                    log.exception("lake compaction failed")

    def close(self) -> None:
        """Flush and stop."""
        self._stop.set()
        self._thread.join(5)
        self.flush()
