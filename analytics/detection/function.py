"""All detectors of one function, fed every execution in order; the unit the detector actor hosts."""

from __future__ import annotations

import pickle
import time
from typing import Any

import numpy as np

from analytics.detection.aggregate import IntervalAggregator
from analytics.detection.anomaly import Anomaly
from analytics.detection.calibrate import ALARM_SCORE, p_to_score
from analytics.detection.drift import DriftDetector, DriftFinding
from analytics.detection.features import FEATURES, contention_bounds, inverse, raw_features, transform
from analytics.detection.outlier import OutlierDetector
from analytics.detection.regression import RegressionDetector, RegressionFinding
from analytics.detection.series import StreamingSeriesDetector
from core.models import MetricRecord

STATE_FORMAT = 1
DRIFT_METRICS = ("duration_ms", "cpu_ms", "peak_memory_mb")
NEW_VERSION_WARMUP = 20  # a new version gets its own outlier model after this many warm executions


class FunctionDetectors:
    """Outliers per execution, time-series anomalies per interval, drift, and version regressions."""

    # class-level defaults, so that states pickled before these existed load with them
    refit_generation: int = 0  # how many batch refits (analytics.jobs.retrain) this state has had
    refitted_at: float | None = None  # epoch seconds of the last batch refit

    def __init__(
        self,
        function: str,
        warmup: int = 50,
        interval_s: float = 60.0,
        outlier_model: str = "mahalanobis",
        ts_min_score: float = ALARM_SCORE,
    ):
        self.function = function
        self.warmup = warmup
        self.outlier_model = outlier_model
        self.outlier = OutlierDetector(model=outlier_model, warmup=warmup)
        self.drift = DriftDetector(DRIFT_METRICS)
        self.regression = RegressionDetector()
        self.outlier_name = f"robust-{outlier_model}-outlier/{OutlierDetector.VERSION}"
        self.aggregator = IntervalAggregator(interval_s)
        self.series: dict[str, StreamingSeriesDetector] = {}
        self.ts_min_score = ts_min_score
        self.version: int | None = None
        self.tolerance: dict[tuple[str, str], float] = {}  # feedback: (kind, metric) -> tolerated deviation
        self.feedback_log: list[tuple[str, str, str]] = []
        self.executions = 0

    # -- live path -------------------------------------------------------------------------------
    def observe(self, rec: MetricRecord) -> list[Anomaly]:
        """Score one execution (in finish order) and return what stood out."""
        self.executions += 1
        out: list[Anomaly] = []
        if self.version is not None and rec.version != self.version:
            self.on_version_change(rec.version)
        self.version = rec.version
        self.regression.start_version(rec.version)
        if not rec.cold_start:  # cold starts are their own population: never scored, never a baseline
            a = self._outlier(rec)
            if a is not None:
                out.append(a)
            values = _values(rec)
            out.extend(self._drift(f, rec) for f in self.drift.update(values))
            out.extend(self._regression(f, rec) for f in self.regression.update(values))
        for ts, agg in self.aggregator.add(rec):
            out.extend(self._interval(ts, agg, rec.version))
        return out

    def _outlier(self, rec: MetricRecord) -> Anomaly | None:
        # an execution that waited for a CPU is judged by its most normal reading (see contention_bounds):
        # the host's noise is not the function's anomaly, and a real change stands out in every reading
        measured = raw_features(rec)
        t = transform(measured)
        if rec.cpu_wait_ms > 0:
            least, most = contention_bounds(measured, rec.cpu_wait_ms)
            t = self.outlier.most_normal(t, transform(least), transform(most))
        v = self.outlier.observe(t)
        if v is None or not v.anomalous or self.outlier.profile is None:
            return None
        raw = np.array([inverse(float(x), i) for i, x in enumerate(t)])  # the reading judged, in its own units
        f = v.feature
        low, high = self.outlier.profile.expected_range(f, self.outlier.z_min, float(self.outlier.widen[f]))
        contrib = {FEATURES[i]: round(float(v.z[i]), 2) for i in range(len(FEATURES))}
        details: dict[str, Any] = {"robust_z": contrib, "z_min": self.outlier.z_min, "features": raw.tolist(),
                                   "measured": measured.tolist(), "cpu_wait_ms": rec.cpu_wait_ms}
        if v.model_score is not None:
            details.update(model_score=v.model_score, model_threshold=v.threshold)
        return Anomaly("outlier", FEATURES[f], float(raw[f]), low, high, round(v.score, 4), self.outlier_name,
                       rec.task_id, rec.version, details)

    def _interval(self, ts: float, agg: dict[str, float], version: int) -> list[Anomaly]:
        out: list[Anomaly] = []
        for name, value in agg.items():
            det = self.series.setdefault(name, StreamingSeriesDetector())
            score = det.update(ts, value)
            if score < self.ts_min_score:
                continue
            low, high = det.band()
            expected = float(det.last_detail.get("expected", value))
            if abs(value - expected) <= self.tolerance.get(("timeseries", name), -1.0):
                continue
            out.append(Anomaly("timeseries", name, value, low, high, round(score, 4),
                               f"{StreamingSeriesDetector.NAME}/{StreamingSeriesDetector.VERSION}", None, version,
                               {"interval_end": ts, "interval_s": self.aggregator.interval_s,
                                "expected": expected}))
        return out

    def _drift(self, f: DriftFinding, rec: MetricRecord) -> Anomaly:
        msg = f"{f.metric} median {f.rel_change:+.0%} vs reference ({f.ref_median:.4g} -> {f.cur_median:.4g})"
        return Anomaly("drift", f.metric, f.cur_median, f.ref_low, f.ref_high, round(p_to_score(f.p_value), 4),
                       f"{DriftDetector.NAME}/{DriftDetector.VERSION}", rec.task_id, rec.version,
                       {"message": msg, "p_value": f.p_value, "effect_sd": f.effect, "rel_change": f.rel_change,
                        "reference_median": f.ref_median})

    def _regression(self, f: RegressionFinding, rec: MetricRecord) -> Anomaly:
        return Anomaly("regression", f.metric, f.new_p95, f.old_low, f.old_high, round(p_to_score(f.p_value), 4),
                       f"{RegressionDetector.NAME}/{RegressionDetector.VERSION}", rec.task_id, rec.version,
                       {"message": f.message, "p_value": f.p_value, "rel_change": f.rel_change,
                        "old_version": f.old_version, "new_version": f.new_version, "old_p95": f.old_p95,
                        "new_p95": f.new_p95, "n_old": f.n_old, "n_new": f.n_new})

    def on_version_change(self, new_version: int) -> None:
        """A new version went active (also detected from the records' version)."""
        if new_version == self.version:
            return
        self.version = new_version
        self.regression.start_version(new_version)
        self.drift.reset()
        widen = self.outlier.widen
        self.outlier = OutlierDetector(model=self.outlier_model, warmup=min(self.warmup, NEW_VERSION_WARMUP))
        self.outlier.widen = widen

    # -- feedback, persistence, batch refit ------------------------------------------------------
    def feedback(self, anomaly: Anomaly, verdict: str) -> None:
        """`false_positive` widens the expected range of that metric for this function; `confirmed` is recorded."""
        if verdict not in ("false_positive", "confirmed"):
            raise ValueError(f"verdict must be 'false_positive' or 'confirmed', got {verdict!r}")
        self.feedback_log.append((anomaly.kind, anomaly.metric, verdict))
        if verdict != "false_positive":
            return
        if anomaly.kind == "outlier" and anomaly.metric in FEATURES:
            raw = np.array(anomaly.details.get("features") or [0.0] * len(FEATURES), dtype=float)
            f = FEATURES.index(anomaly.metric)
            raw[f] = anomaly.observed
            self.outlier.accept(transform(raw))
        elif anomaly.kind == "drift" and anomaly.metric in self.drift.metrics:
            d = self.drift.metrics[anomaly.metric]
            d.min_rel = max(d.min_rel, abs(float(anomaly.details.get("rel_change", 0.0))) * 1.1)
        elif anomaly.kind == "regression":
            rel = abs(float(anomaly.details.get("rel_change", 0.0))) * 1.1
            cur = self.regression.min_rel_by_metric.get(anomaly.metric, 0.0)
            self.regression.min_rel_by_metric[anomaly.metric] = max(cur, rel)
        elif anomaly.kind == "timeseries":
            dev = abs(anomaly.observed - float(anomaly.details.get("expected", anomaly.observed)))
            key = ("timeseries", anomaly.metric)
            self.tolerance[key] = max(self.tolerance.get(key, 0.0), dev * 1.1)

    def state(self) -> bytes:
        """Everything fitted, as bytes (pickle, versioned)."""
        return pickle.dumps({"format": STATE_FORMAT, "detectors": self}, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_state(cls, data: bytes) -> FunctionDetectors:
        """Rebuild from `state()`; ValueError on an unknown format."""
        obj = pickle.loads(data)
        if not isinstance(obj, dict) or obj.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported detector state format {obj.get('format') if isinstance(obj, dict) else '?'}")
        det = obj["detectors"]
        if not isinstance(det, cls):
            raise ValueError("detector state does not hold FunctionDetectors")
        return det

    def refit(self, history: list[MetricRecord], now: float | None = None) -> dict[str, int]:
        """Batch retrain from the lake (records in finish order); returns how many rows each model used.

        The outlier model is refitted on the newest version's latest warm executions; the time-series
        detectors are rebuilt by replaying the per-interval aggregates of the whole history (kept only when
        the replay covers at least as many intervals as the live detector has seen, or a day); each drift
        reference becomes the newest window of warm executions; a regression baseline is rebuilt when the
        model has not yet seen the newest version. Feedback (widened ranges, tolerances) is kept.
        """
        used = {"outlier": 0, "timeseries": 0, "drift": 0, "regression": 0}
        warm = [r for r in history if not r.cold_start]
        if history:
            used["timeseries"] = self._refit_series(history)
        if warm:
            newest = max(r.version for r in warm)
            cur = [r for r in warm if r.version == newest]
            used["outlier"] = self._refit_outlier(cur)
            used["drift"] = self._refit_drift(cur)
            if self.regression.version != newest:
                older = [r for r in warm if r.version < newest]
                prev_version = max((r.version for r in older), default=None)
                prev = [r for r in older if r.version == prev_version]
                used["regression"] = self._refit_regression(prev, prev_version, cur, newest)
            self.version = newest
        self.refit_generation += 1
        self.refitted_at = time.time() if now is None else now
        return used

    def _refit_outlier(self, cur: list[MetricRecord]) -> int:
        rows = [transform(raw_features(r)) for r in cur]
        rows = rows[-(self.outlier.history.maxlen or 1000):]
        if len(rows) < self.warmup:
            return 0
        if self.version is not None and cur and cur[-1].version != self.version:
            widen = self.outlier.widen
            self.outlier = OutlierDetector(model=self.outlier_model, warmup=self.warmup)
            self.outlier.widen = widen
        self.outlier.history.clear()
        self.outlier.history.extend(rows)
        self.outlier.recent.clear()
        self.outlier.fit()
        self.outlier.seen = 0
        return len(rows)

    def _refit_series(self, history: list[MetricRecord]) -> int:
        agg = IntervalAggregator(self.aggregator.interval_s)
        series: dict[str, StreamingSeriesDetector] = {}
        intervals = 0
        for rec in history:
            for ts, values in agg.add(rec):
                intervals += 1
                for name, value in values.items():
                    series.setdefault(name, StreamingSeriesDetector()).update(ts, value)
        seen = max((d.n for d in self.series.values()), default=0)
        if intervals < min(seen, int(86400 / self.aggregator.interval_s)):
            return 0  # a shorter history than the live detectors already learnt from: keep them
        self.aggregator, self.series = agg, series
        return intervals

    def _refit_drift(self, cur: list[MetricRecord]) -> int:
        used = 0
        for name, d in self.drift.metrics.items():
            values = [float(getattr(r, name)) for r in cur[-d.ref_size:]]
            d.set_reference(values)
            used = max(used, len(values))
        return used

    def _refit_regression(self, prev: list[MetricRecord], prev_version: int | None, cur: list[MetricRecord],
                          newest: int) -> int:
        reg = self.regression
        reg.version, reg.prev, reg.prev_version = None, [], None
        if prev_version is not None:
            reg.start_version(prev_version)
            reg.cur.extend(_values(r) for r in prev[-reg.keep:])
        reg.start_version(newest)
        reg.cur.extend(_values(r) for r in cur[-reg.keep:])
        reg.new_count = len(cur)
        return len(reg.prev) + len(reg.cur)


def _values(rec: MetricRecord) -> dict[str, float]:
    """The per-execution values the drift and regression detectors take."""
    return {"duration_ms": rec.duration_ms, "cpu_ms": rec.cpu_ms, "peak_memory_mb": rec.peak_memory_mb,
            "error": 1.0 if rec.is_error else 0.0}
