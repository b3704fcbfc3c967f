"""Online drift per metric: alibi-detect's `KSDrift` on a fixed reference window against a sliding recent one.

alibi-detect's CVMDriftOnline was measured here: configuring its thresholds by simulation took about
25 s per metric (ERT 1000, 3,000 bootstraps) and each update about 0.8 ms, too slow to build per
function and metric or to rebuild after every version change. Its windowed `KSDrift` (built on the
reference in about 0.1 ms, about 1.3 ms per test) runs every `stride` executions, and only when the
median has moved enough to matter. Drift is reported when the test is significant at `alpha` AND the
shift of the median is practically large (`min_effect` robust deviations of the reference and `min_rel`
relative); then the reference is re-based on the recent window, so one slow creep is reported once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class DriftFinding:
    """A significant, practically relevant shift of one metric's distribution."""

    metric: str
    ref_median: float
    cur_median: float
    ref_low: float
    ref_high: float
    p_value: float
    effect: float  # median shift in robust deviations of the reference
    rel_change: float


class MetricDrift:
    """Drift of one metric's distribution."""

    def __init__(self, metric: str, ref_size: int = 300, window: int = 150, stride: int = 25,
                 alpha: float = 1e-4, min_effect: float = 1.0, min_rel: float = 0.1, max_ref_age: int = 20000):
        self.metric = metric
        self.ref_size, self.stride, self.alpha = ref_size, stride, alpha
        self.min_effect, self.min_rel, self.max_ref_age = min_effect, min_rel, max_ref_age
        self.collecting: list[float] = []
        self.ref: np.ndarray | None = None
        self.ref_stats = (0.0, 1.0, 0.0, 0.0)  # median, robust scale, p5, p95
        self.window: deque[float] = deque(maxlen=window)
        self.since_test = 0
        self.ref_age = 0
        self._ks: Any = None  # alibi-detect KSDrift on `ref`, built on first use (not pickled)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the alibi-detect object (rebuilt from the reference when next needed)."""
        state = dict(self.__dict__)
        state["_ks"] = None
        return state

    def reset(self) -> None:
        """Forget the reference (e.g. a new version): collect a new one from what comes next."""
        self.collecting, self.ref = [], None
        self.window.clear()

    def set_reference(self, values: list[float]) -> None:
        """Batch refit: `values` (oldest first) become the reference, or its first part if too few."""
        self.reset()
        if len(values) >= self.ref_size:
            self._set_ref(np.asarray(values[-self.ref_size:], dtype=float))
        else:
            self.collecting = list(values)

    def _set_ref(self, values: np.ndarray) -> None:
        self.ref = np.sort(values)
        self._ks = None
        med = float(np.median(values))
        mad = 1.4826 * float(np.median(np.abs(values - med)))
        p5, p95 = (float(v) for v in np.percentile(values, [5, 95]))
        scale = max(mad, (p95 - p5) / 3.29, 1e-9 + 0.01 * abs(med))
        self.ref_stats = (med, scale, p5, p95)
        self.ref_age = 0
        self.window.clear()
        self.since_test = 0

    def update(self, x: float) -> DriftFinding | None:
        """Add one observation; a finding when drift is established."""
        if self.ref is None:
            self.collecting.append(x)
            if len(self.collecting) >= self.ref_size:
                self._set_ref(np.asarray(self.collecting))
                self.collecting = []
            return None
        self.window.append(x)
        self.ref_age += 1
        self.since_test += 1
        if len(self.window) < (self.window.maxlen or 0) or self.since_test < self.stride:
            return None
        self.since_test = 0
        cur = np.asarray(self.window)
        med, scale, p5, p95 = self.ref_stats
        cur_med = float(np.median(cur))
        effect = (cur_med - med) / scale
        rel = (cur_med - med) / abs(med) if med else math.inf
        if abs(effect) >= self.min_effect and abs(rel) >= self.min_rel:
            p = self._pvalue(cur)
            if p < self.alpha:
                finding = DriftFinding(self.metric, med, cur_med, p5, p95, p, effect, rel)
                self._set_ref(cur)
                return finding
        if self.ref_age >= self.max_ref_age:
            self._set_ref(cur)
        return None


    def _pvalue(self, cur: np.ndarray) -> float:
        """KSDrift's p-value of the recent window against the reference."""
        if getattr(self, "_ks", None) is None:
            from alibi_detect.cd import KSDrift

            self._ks = KSDrift(np.asarray(self.ref, dtype=np.float64).reshape(-1, 1), p_val=self.alpha)
        out = self._ks.predict(cur.reshape(-1, 1), return_p_val=True)
        return max(float(out["data"]["p_val"][0]), 1e-300)


class DriftDetector:
    """Drift of each metric of a function's warm executions."""

    VERSION = 2
    NAME = "alibi-ksdrift"

    def __init__(self, metrics: tuple[str, ...], **kw: float):
        self.metrics = {m: MetricDrift(m, **kw) for m in metrics}  # type: ignore[arg-type]

    def update(self, values: dict[str, float]) -> list[DriftFinding]:
        """Feed one execution's metrics; findings for the metrics that drifted."""
        out = []
        for m, v in values.items():
            d = self.metrics.get(m)
            if d is not None:
                f = d.update(v)
                if f is not None:
                    out.append(f)
        return out

    def reset(self) -> None:
        """Start new references for every metric."""
        for d in self.metrics.values():
            d.reset()
