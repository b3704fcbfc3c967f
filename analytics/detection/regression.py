"""Version regressions: a new version's first executions against the previous version's last ones.

Per metric a one-sided Mann-Whitney U test (Fisher's exact test for the error rate) after every new
execution from `min_new` on, until `max_new`. A regression is reported once per version and metric
when p < `alpha` and the effect is practically large (median +`min_rel` for magnitudes, +`min_rate`
for the error rate); the message compares p95s ("v7 duration p95 +40% vs v6").
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.stats import fisher_exact, mannwhitneyu

LABELS = {"duration_ms": "duration", "cpu_ms": "cpu", "peak_memory_mb": "memory", "error": "error rate"}


@dataclass
class RegressionFinding:
    """A version slower / heavier / more failing than its predecessor, established."""

    metric: str
    old_version: int
    new_version: int
    old_p95: float
    new_p95: float
    old_low: float
    old_high: float
    rel_change: float
    p_value: float
    n_old: int
    n_new: int
    message: str


class RegressionDetector:
    """Compares the active version with the one before it."""

    VERSION = 1
    NAME = "mannwhitney-regression"

    def __init__(self, metrics: tuple[str, ...] = ("duration_ms", "cpu_ms", "peak_memory_mb", "error"),
                 keep: int = 200, min_old: int = 20, min_new: int = 8, max_new: int = 200, alpha: float = 1e-3,
                 min_rel: float = 0.1, min_rate: float = 0.05):
        self.metrics = metrics
        self.keep, self.min_old, self.min_new, self.max_new = keep, min_old, min_new, max_new
        self.alpha, self.min_rel, self.min_rate = alpha, min_rel, min_rate
        self.version: int | None = None
        self.cur: deque[dict[str, float]] = deque(maxlen=keep)
        self.prev: list[dict[str, float]] = []
        self.prev_version: int | None = None
        self.new_count = 0
        self.reported: set[str] = set()
        self.min_rel_by_metric: dict[str, float] = {}  # widened by feedback

    def start_version(self, version: int) -> None:
        """The active version changed: the current sample becomes the baseline."""
        if version == self.version:
            return
        if self.version is not None and len(self.cur) >= self.min_old:
            self.prev, self.prev_version = list(self.cur), self.version
        self.version = version
        self.cur = deque(maxlen=self.keep)
        self.new_count = 0
        self.reported = set()

    def update(self, values: dict[str, float]) -> list[RegressionFinding]:
        """Feed one warm execution of the active version."""
        self.cur.append(values)
        self.new_count += 1
        if not self.prev or self.prev_version is None or self.version is None:
            return []
        if self.new_count < self.min_new or self.new_count > self.max_new:
            return []
        out = []
        for m in self.metrics:
            if m in self.reported:
                continue
            f = self._test(m)
            if f is not None:
                self.reported.add(m)
                out.append(f)
        return out

    def _test(self, m: str) -> RegressionFinding | None:
        old = np.array([r[m] for r in self.prev if m in r], dtype=float)
        new = np.array([r[m] for r in self.cur if m in r], dtype=float)
        if len(old) < self.min_old or len(new) < self.min_new:
            return None
        assert self.prev_version is not None and self.version is not None
        if m == "error":
            a, b = int(new.sum()), int(old.sum())
            rate_new, rate_old = a / len(new), b / len(old)
            if rate_new - rate_old < max(self.min_rate, self.min_rel_by_metric.get(m, 0.0)):
                return None
            p = float(fisher_exact([[a, len(new) - a], [b, len(old) - b]], alternative="greater").pvalue)
            if p >= self.alpha:
                return None
            msg = (f"v{self.version} error rate {rate_new:.0%} vs {rate_old:.0%} in v{self.prev_version}")
            return RegressionFinding(m, self.prev_version, self.version, rate_old, rate_new, 0.0, rate_old,
                                     rate_new - rate_old, p, len(old), len(new), msg)
        med_old, med_new = float(np.median(old)), float(np.median(new))
        rel_med = (med_new - med_old) / abs(med_old) if med_old else 0.0
        if rel_med < max(self.min_rel, self.min_rel_by_metric.get(m, 0.0)):
            return None
        p = float(mannwhitneyu(new, old, alternative="greater").pvalue)
        if p >= self.alpha:
            return None
        p95_old, p95_new = float(np.percentile(old, 95)), float(np.percentile(new, 95))
        rel = (p95_new - p95_old) / abs(p95_old) if p95_old else rel_med
        lo, hi = (float(v) for v in np.percentile(old, [5, 95]))
        msg = f"v{self.version} {LABELS.get(m, m)} p95 {rel:+.0%} vs v{self.prev_version}"
        return RegressionFinding(m, self.prev_version, self.version, p95_old, p95_new, lo, hi, rel, p,
                                 len(old), len(new), msg)
