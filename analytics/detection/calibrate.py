"""Self-calibration: turn a raw deviation into a tail probability under the stream's own past deviations.

The body of the distribution is a decayed histogram of past raw scores on log-spaced bins; above its
98th percentile the tail is extrapolated as a generalised Pareto distribution (peaks-over-threshold, as
in SPOT/DSPOT), so that values beyond anything seen still get a finite, decreasing probability. Its scale
and shape come from the median and the 90th percentile of the excesses (quantile matching, robust to one
huge past value); the shape is kept in [0, 0.5]: exponential for light (e.g. Gaussian) tails, a power law
for heavy ones (Student-t, log-normal noise), where an exponential would call ordinary values extreme. A
heavy-tailed prior (Student-t-like) carries the first points, blended away as evidence accumulates.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

_LN10 = math.log(10.0)
_EDGES: list[float] = [0.0, *np.geomspace(1e-3, 1e6, 400).tolist()]
_EDGES_NP = np.asarray(_EDGES)


def prior_tail(z: float) -> float:
    """Tail P(Z >= z) for a robust z-score before calibration data: heavier than normal (Student-t8-like)."""
    return min(1.0, (1.0 + z * z / 8.0) ** -4.5)


ALARM_SCORE = 0.5  # the documented alarm level: live anomaly records and the default alert rules use it
ALARM_LOG10P = 4.0  # surprise (-log10 of a tail probability) that maps to ALARM_SCORE: one in 10,000 points


def surprise_to_score(surprise: float, half: float = ALARM_LOG10P) -> float:
    """Map a surprise (-log10 p) to [0, 1) without saturating: s / (s + half), 0.5 at one in 10,000."""
    s = max(0.0, surprise)
    return s / (s + half) if math.isfinite(s) else 1.0


def p_to_score(p: float) -> float:
    """Map a tail probability to [0, 1): 0.5 at p = 1e-4, ever closer to 1 for rarer events, never equal to it."""
    if p >= 1.0:
        return 0.0
    return surprise_to_score(-math.log10(max(p, 1e-300)))


def log10_prior_tail(z: float) -> float:
    """log10 of `prior_tail(z)`, exact where the tail underflows."""
    return -4.5 * math.log10(1.0 + z * z / 8.0)


class TailCalibrator:
    """Empirical tail probability of a non-negative raw score, O(1) amortised per update."""

    _logs = (-1.0, 0.0, 0.0, 0.0)  # default for states pickled before this cache existed

    def __init__(self, prior_n: float = 20.0, tail_q: float = 0.02, refresh: int = 64, memory: float = 20000.0,
                 max_shape: float = 0.5):
        self.max_shape = max_shape
        self.prior_n = prior_n
        self.tail_q = tail_q
        self.refresh = refresh
        self.decay = math.exp(-refresh / memory)  # applied every `refresh` updates: effective memory ~`memory`
        self.counts = np.zeros(len(_EDGES))
        self._pending: list[float] = []
        self._pending_values = True  # `_pending` holds raw scores (states pickled before: bin indices)
        self.n = 0.0
        self._surv = np.ones(len(_EDGES))  # P(Z >= lower edge of bin i)
        self._u = math.inf  # tail threshold
        self._q = 0.0  # P(Z >= u)
        self._beta = 1.0  # tail scale
        self._xi = 0.0  # tail shape (0: exponential)
        self._logs = (-1.0, 0.0, 0.0, 0.0)  # (n, log10 n, log10 prior_n, log10(n + prior_n)) cached

    def pvalue(self, z: float) -> float:
        """Tail probability of z given the scores seen so far (prior-blended)."""
        return 10.0 ** self.log10_pvalue(z)

    def log10_pvalue(self, z: float) -> float:
        """log10 of `pvalue(z)`, computed in log space so that the far tail never underflows to a tie."""
        if z < 0.0:
            z = 0.0
        prior = -4.5 * math.log10(1.0 + z * z / 8.0)  # log10_prior_tail, inlined
        if self.n <= 0:
            return prior
        if z <= self._u:
            s = float(self._surv[bisect.bisect_right(_EDGES, z) - 1])
            data = math.log10(s) if s > 0 else -math.inf
        elif self._q <= 0.0:
            data = -math.inf
        elif self._xi < 1e-6:
            data = math.log10(self._q) - (z - self._u) / self._beta / _LN10
        else:
            data = math.log10(self._q) - math.log10(1.0 + self._xi * (z - self._u) / self._beta) / self._xi
        if self._logs[0] != self.n:
            self._logs = (self.n, math.log10(self.n), math.log10(self.prior_n), math.log10(self.n + self.prior_n))
        _, ln, lp, lt = self._logs
        a, b = ln + data, lp + prior
        m = max(a, b)
        if m == -math.inf:
            return m
        return min(0.0, m + math.log10(1.0 + 10.0 ** (min(a, b) - m)) - lt)

    def update(self, z: float) -> None:
        """Add one raw score to the reference distribution (binned in batches, at the next flush)."""
        p = self._pending
        p.append(z)
        if len(p) >= self.refresh or self.n < 200:
            self._flush()

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickle; pending entries of older states are bin indices, turned back into values of those bins."""
        self.__dict__.update(state)
        if "_pending_values" not in state:
            self._pending = [_EDGES[int(i)] for i in self._pending]
            self._pending_values = True

    def _flush(self) -> None:
        if self.n >= 200:
            self.counts *= self.decay
        z = np.clip(np.nan_to_num(np.asarray(self._pending, dtype=float), nan=0.0), 0.0, 1e6)
        np.add.at(self.counts, np.searchsorted(_EDGES_NP, z, side="right") - 1, 1.0)
        self._pending.clear()
        self.n = float(self.counts.sum())
        surv = np.cumsum(self.counts[::-1])[::-1] / self.n
        self._surv = surv
        # tail threshold: lowest bin edge whose survival is <= tail_q
        idx = int(np.searchsorted(-surv, -self.tail_q, side="left"))
        if self.n < 50 or idx >= len(_EDGES):
            self._u, self._q = math.inf, 0.0
            return
        self._u = _EDGES[idx]
        self._q = float(surv[idx])
        # tail scale and shape from the median and 90th-percentile excesses: one huge past anomaly must not
        # fatten the tail the way it would inflate a mean excess
        half = int(np.searchsorted(-surv, -0.5 * self._q, side="left"))
        tenth = int(np.searchsorted(-surv, -0.1 * self._q, side="left"))
        med_excess = _EDGES[min(half, len(_EDGES) - 1)] - self._u
        q90_excess = _EDGES[min(tenth, len(_EDGES) - 1)] - self._u
        floor = max(1e-3 * max(self._u, 1e-3), 1e-6)
        enough = med_excess > floor and self.n * self._q >= 100
        xi = gpd_shape(q90_excess / med_excess, self.max_shape) if enough else 0.0
        self._xi = xi
        if xi < 1e-6:
            self._beta = max(med_excess / math.log(2.0), floor)
        else:
            self._beta = max(med_excess * xi / (2.0**xi - 1.0), floor)


def gpd_shape(ratio: float, max_shape: float = 0.5) -> float:
    """GPD shape whose 90% / 50% excess-quantile ratio is `ratio`, clipped to [0, max_shape]."""

    def r(xi: float) -> float:
        return math.log(10.0) / math.log(2.0) if xi < 1e-9 else (10.0**xi - 1.0) / (2.0**xi - 1.0)

    if ratio <= r(0.0):
        return 0.0
    if ratio >= r(max_shape):
        return max_shape
    lo, hi = 0.0, max_shape
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if r(mid) < ratio else (lo, mid)
    return 0.5 * (lo + hi)
