"""DetectorShard: a Ray actor hosting many functions' detector models (one shard per slice of functions).

Each execution's metrics arrive in batches from the API replica; each function's `FunctionDetectors`
scores them in order; anomalies are written to PostgreSQL at once; models are persisted (debounced) to
`detector_state` and reloaded on first use after a restart or an actor crash.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import ray
from sqlalchemy import insert, select, text

from analytics.detection import Anomaly, FunctionDetectors
from analytics.jobs.retrain import store_state
from core.db.engine import make_engine
from core.db.tables import Anomaly as AnomalyRow
from core.db.tables import DetectorState
from core.models import MetricRecord

log = logging.getLogger(__name__)
PERSIST_EVERY_S = 10.0


class DetectorHost:
    """The shard's logic, independent of Ray (so it can be tested and reused in a job)."""

    def __init__(self, database_url: str, warmup: int = 50) -> None:
        self.engine = make_engine(database_url, pool_size=2)
        self.warmup = warmup
        self.models: dict[tuple[str, str], FunctionDetectors] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.last_persist = time.monotonic()
        self.scored = 0
        self.last_latency_ms: float | None = None
        self.loaded_at: dict[tuple[str, str], datetime | None] = {}  # the row version each model came from
        self.last_check = datetime.now(UTC)

    def _model(self, namespace: str, function: str) -> FunctionDetectors:
        key = (namespace, function)
        m = self.models.get(key)
        if m is None:
            with self.engine.connect() as conn:
                row = conn.execute(select(DetectorState.state, DetectorState.updated_at).where(
                    DetectorState.namespace == namespace, DetectorState.function == function)).first()
            self.loaded_at[key] = None if row is None else row[1]
            if row is not None:
                try:
                    m = FunctionDetectors.from_state(row[0])
                except Exception as exc:  # unreadable state: start afresh rather than stop scoring
                    log.warning("could not load detector state of %s/%s: %s", namespace, function, exc)
            if m is None:
                m = FunctionDetectors(function, warmup=self.warmup)
            self.models[key] = m
        return m

    def observe(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score a batch in order; store and return the anomalies found."""
        found: list[tuple[MetricRecord, Anomaly]] = []
        for r in records:
            rec = MetricRecord(**r)
            model = self._model(rec.namespace, rec.function)
            try:
                for a in model.observe(rec):
                    found.append((rec, a))
            except Exception:
                log.exception("detector failed on %s", rec.task_id)
            self.dirty.add((rec.namespace, rec.function))
        self.scored += len(records)
        rows = [self._row(rec, a) for rec, a in found]
        if rows:
            with self.engine.begin() as conn:
                ids = conn.execute(insert(AnomalyRow).returning(AnomalyRow.id), rows).scalars().all()
            for row, i in zip(rows, ids, strict=True):
                row["id"] = i
            if records:
                self.last_latency_ms = (time.time() - max(r["finished_at"] for r in records)) * 1000
        if time.monotonic() - self.last_persist > PERSIST_EVERY_S:
            self.persist()
        return rows

    def _row(self, rec: MetricRecord, a: Anomaly) -> dict[str, Any]:
        details = dict(a.details)
        details["explanation"] = details.get("message") or (
            f"{a.metric} {a.observed:.4g} outside the expected {a.expected_low:.4g}..{a.expected_high:.4g}")
        return {"namespace": rec.namespace, "function": rec.function,
                "version": a.version if a.version is not None else rec.version, "kind": a.kind,
                "metric": a.metric, "observed": float(a.observed), "expected_low": float(a.expected_low),
                "expected_high": float(a.expected_high), "score": float(a.score),
                "task_id": a.task_id if a.task_id is not None else (rec.task_id if a.kind == "outlier" else None),
                "detector": a.detector, "details": json.loads(json.dumps(details, default=str)),
                "detected_at": datetime.now(UTC)}

    def persist(self) -> int:
        """Save changed models (compare-and-swap: a model the retrain job replaced is reloaded, not overwritten)."""
        self._drop_retrained()
        keys, self.dirty = self.dirty, set()
        self.last_persist = time.monotonic()
        saved = 0
        for key in keys:
            model = self.models.get(key)
            if model is None:
                continue
            written = store_state(self.engine, key[0], key[1], model.state(), self.loaded_at.get(key))
            if written is None:  # someone (the retrain job) wrote a newer state: use theirs from now on
                self.models.pop(key, None)
                self.loaded_at.pop(key, None)
            else:
                self.loaded_at[key] = written
                saved += 1
        return saved

    def _drop_retrained(self) -> None:
        """Forget held models whose stored state changed under us (so the next use reloads it)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(DetectorState.namespace, DetectorState.function, DetectorState.updated_at)
                                .where(DetectorState.updated_at > self.last_check - timedelta(minutes=1))).all()
        self.last_check = datetime.now(UTC)
        for ns, fn, updated in rows:
            key = (ns, fn)
            if key in self.models and self.loaded_at.get(key) != updated:
                self.models.pop(key, None)
                self.loaded_at.pop(key, None)
                self.dirty.discard(key)

    def feedback(self, anomaly_id: int, verdict: str) -> bool:
        """Apply a user's verdict on an anomaly to the function's model."""
        with self.engine.connect() as conn:
            row = conn.execute(select(AnomalyRow).where(AnomalyRow.id == anomaly_id)).first()
        if row is None:
            return False
        a = Anomaly(kind=row.kind, metric=row.metric, observed=row.observed, expected_low=row.expected_low,
                    expected_high=row.expected_high, score=row.score, detector=row.detector,
                    task_id=row.task_id, version=row.version, details=dict(row.details or {}))
        model = self._model(row.namespace, row.function)
        model.feedback(a, verdict)
        self.dirty.add((row.namespace, row.function))
        self.persist()
        return True

    def forget(self, namespace: str, function: str) -> None:
        """Drop a deleted function's models."""
        self.models.pop((namespace, function), None)
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM detector_state WHERE namespace = :n AND function = :f"),
                         {"n": namespace, "f": function})

    def stats(self) -> dict[str, Any]:
        """Counters for health and tests."""
        return {"functions": len(self.models), "scored": self.scored, "last_latency_ms": self.last_latency_ms}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class DetectorShard:
    """Ray actor wrapper around DetectorHost."""

    def __init__(self, database_url: str, warmup: int = 50) -> None:
        self.host = DetectorHost(database_url, warmup)

    def observe(self, records: list[dict[str, Any]]) -> int:
        """Score a batch; return how many anomalies were stored."""
        return len(self.host.observe(records))

    def feedback(self, anomaly_id: int, verdict: str) -> bool:
        """Apply feedback."""
        return self.host.feedback(anomaly_id, verdict)

    def persist(self) -> int:
        """Save changed models now."""
        return self.host.persist()

    def forget(self, namespace: str, function: str) -> None:
        """Drop a function's models."""
        self.host.forget(namespace, function)

    def stats(self) -> dict[str, Any]:
        """Counters."""
        return self.host.stats()
