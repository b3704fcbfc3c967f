"""Per-execution feature vectors and robust per-feature statistics (the explanation of an outlier)."""

from __future__ import annotations

import math

import numpy as np

from core.models import MetricRecord

FEATURES: tuple[str, ...] = ("duration_ms", "cpu_ms", "peak_memory_mb", "error", "input_bytes", "output_bytes")
ERROR = FEATURES.index("error")
DURATION = FEATURES.index("duration_ms")
CPU = FEATURES.index("cpu_ms")
_LOG = np.array([i != ERROR for i in range(len(FEATURES))])
MIN_LOG_SCALE = 0.05  # a 5% change is never "many deviations" however steady the history (z_min 5: ~28%)


def raw_features(rec: MetricRecord) -> np.ndarray:
    """The execution's features in their own units."""
    return np.array(
        [rec.duration_ms, rec.cpu_ms, rec.peak_memory_mb, 1.0 if rec.is_error else 0.0,
         float(rec.input_bytes), float(rec.output_bytes)],
        dtype=float,
    )


def contention_bounds(raw: np.ndarray, cpu_wait_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """What an execution's duration and CPU would have been had it never waited for a CPU, as ranges.

    Work of fixed size keeps its CPU time under contention and only its duration grows (so the true
    duration is as low as duration - wait); work bounded by a deadline keeps its duration and loses
    the CPU time it spent waiting (so the true CPU is as high as cpu + wait). Each lies in between.
    """
    low, high = raw.copy(), raw.copy()
    low[DURATION] = max(0.0, raw[DURATION] - cpu_wait_ms)
    high[CPU] = raw[CPU] + cpu_wait_ms
    return low, high


def transform(raw: np.ndarray) -> np.ndarray:
    """Model space: log1p of the non-negative magnitudes (multiplicative changes become additive)."""
    out = np.array(raw, dtype=float)
    out[..., _LOG] = np.log1p(np.maximum(out[..., _LOG], 0.0))
    return out


def inverse(t: float, feature: int) -> float:
    """Back from model space to the feature's own units."""
    if feature == ERROR:
        return min(1.0, max(0.0, t))
    return max(0.0, math.expm1(t))


class RobustProfile:
    """Median and robust scale of each transformed feature over a reference history."""

    def __init__(self, history: np.ndarray):
        n = len(history)
        self.n = n
        self.median = np.median(history, axis=0)
        mad = np.median(np.abs(history - self.median), axis=0) * 1.4826
        q = np.percentile(history, [5, 95], axis=0)
        spread = (q[1] - q[0]) / 3.29  # 90% range of a normal is 3.29 sd
        scale = np.maximum(mad, spread)
        p = (history[:, ERROR].sum() + 0.5) / (n + 1.0)  # smoothed error rate
        scale[ERROR] = math.sqrt(p * (1 - p))
        self.median[ERROR] = history[:, ERROR].mean()
        scale[_LOG] = np.maximum(scale[_LOG], MIN_LOG_SCALE)
        self.scale = scale
        self.constant = np.ptp(history, axis=0) == 0

    def z(self, t: np.ndarray, widen: np.ndarray) -> np.ndarray:
        """Signed robust z per feature, with each feature's feedback widening applied."""
        return (t - self.median) / (self.scale * widen)

    def expected_range(self, feature: int, k: float, widen: float) -> tuple[float, float]:
        """The `k`-deviation range of a feature in its own units."""
        m, s = float(self.median[feature]), float(self.scale[feature]) * widen
        return inverse(m - k * s, feature), inverse(m + k * s, feature)
