"""Causal streaming time-series anomaly scorer for per-interval aggregates, live and in backtests.

Per point, several cheap forecasters predict the value from the past only: the median of a short
window, a robust Holt level+trend, and seasonal-naive forecasts at each candidate period (calendar
cycles derived from the sampling interval, plus the autocorrelation peak once enough history exists).
Each forecaster's error scale is tracked (EW mean absolute error, winsorised); the point deviation is
the smallest standardised error among the forecasters that are about as good as the best one, so a
value that any good model explains is not an anomaly (`explain_ratio`; 1.0 = the best one only, which
measured better). A second component compares the median of the last 8 points with the Holt forecast
made before them (level shifts), a third the median of the last 16 with the median of an older
256-point window (ramps and slow drifts) -- what no single point reveals. Each component's deviation
is turned into a tail probability under that
component's own past deviations (TailCalibrator), combined with a weighted Bonferroni minimum,
and the probability is mapped to [0, 1] on a log scale (0.5 ~ one in 10,000 normal points).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
from scipy.stats import t as student_t

from analytics.detection.calibrate import TailCalibrator, p_to_score
from analytics.detection.periods import acf_period, calendar_periods
from analytics.detection.windows import SortedWindow

_MAD_SD = 1.4826  # MAD -> standard deviation under normality
_MAE_SD = 1.2533  # mean absolute error -> standard deviation under normality


class _Forecaster:
    """Error-scale bookkeeping of one forecaster."""

    __slots__ = ("name", "scale", "count")

    def __init__(self, name: str):
        self.name = name
        self.scale = 0.0
        self.count = 0

    def record(self, err: float, alpha: float = 0.02) -> None:
        """Update the EW mean absolute error with a winsorised error."""
        a = abs(err)
        if self.count >= 16:
            a = min(a, 4.0 * self.scale)
            self.scale += alpha * (a - self.scale)
        else:
            self.scale += (a - self.scale) / (self.count + 1)
        self.count += 1


class StreamingSeriesDetector:
    """Causal anomaly score in [0, 1] per point; O(window) work per update, no look-ahead."""

    VERSION = 1
    NAME = "streaming-series"

    def __init__(
        self,
        window: int = 31,
        short: int = 8,
        max_period: int = 20000,
        acf_every: int = 1024,
        decades: float = 8.0,
        explain_ratio: float = 1.0,
        slow_recent: int = 16,
        slow_lag: int = 64,
        slow_window: int = 256,
    ):
        self.window = SortedWindow(window)
        self.short = SortedWindow(short)
        self.max_period = max_period
        self.acf_every = acf_every
        self.decades = decades
        self.n = 0
        self.hist: list[float] = []  # raw values, trimmed to what the seasonal lags need
        self.med_hist: list[float] = []  # local median after each point
        self.level = 0.0
        self.trend = 0.0
        self.fc: dict[str, _Forecaster] = {"median": _Forecaster("median"), "holt": _Forecaster("holt")}
        self.periods: list[int] = []
        self.acf_p: int | None = None
        self.dts: list[float] = []
        self.dt = 0.0
        self.last_t: float | None = None
        self.cal_point = TailCalibrator()
        self.cal_shift = TailCalibrator()
        self.cal_slow = TailCalibrator()
        self.recent = SortedWindow(slow_recent)
        self.lag: deque[float] = deque(maxlen=slow_lag)
        self.older = SortedWindow(slow_window)
        self._older_mad: float | None = None
        self.last_detail: dict[str, float] = {}
        self._best: str | None = None
        self.snapshots: deque[tuple[float, float]] = deque(maxlen=short)
        self.explain_ratio = explain_ratio
        self.last_scale = 0.0

    # -- the public step -------------------------------------------------------------------------
    def update(self, timestamp: float, value: float) -> float:
        """Score `value` at `timestamp` from the points seen so far, then learn it."""
        x = float(value)
        if not math.isfinite(x):
            return 0.0
        self._track_time(float(timestamp))
        z_point, errs, expected, warm = self._point_deviation(x)
        z_shift = self._shift_deviation(x)
        z_slow = self._slow_deviation(x)
        if warm:
            p = self.cal_point.pvalue(z_point)
        else:  # a handful of points: Student t with the window's degrees of freedom
            p = float(student_t.sf(z_point, max(1, len(self.window) - 1))) * 2.0 if z_point > 0 else 1.0
        # weighted Bonferroni over the components: half the error budget for single points
        ps = [(p, 1.0)]
        if z_shift is not None:
            ps.append((self.cal_shift.pvalue(z_shift), 0.25))
        if z_slow is not None:
            ps.append((self.cal_slow.pvalue(z_slow), 0.25))
            self.cal_slow.update(z_slow)
        if len(ps) > 1:
            ps[0] = (p, 1.0 - sum(w for _, w in ps[1:]))
        p = min(1.0, min(pi / w for pi, w in ps))
        score = p_to_score(p, self.decades) if self.n >= 2 else 0.0
        self.last_detail = {"z_point": z_point, "z_shift": z_shift or 0.0, "z_slow": z_slow or 0.0, "p": p,
                            "expected": expected}
        self._learn(x, z_point if warm else None, z_shift, errs)
        return score

    def band(self, k: float = 4.0) -> tuple[float, float]:
        """Expected range of the last scored point: forecast +- k error deviations."""
        e = float(self.last_detail.get("expected", 0.0))
        return e - k * self.last_scale, e + k * self.last_scale

    # -- components ------------------------------------------------------------------------------
    def _floor(self, ref: float) -> float:
        return 1e-9 + 1e-9 * abs(ref)

    def _forecasts(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.n == 0:
            return out
        out["median"] = self.window.median()
        out["holt"] = self.level + self.trend
        h, mh, n = self.hist, self.med_hist, self.n
        for p in self._all_periods():
            if n < 2 * p + 1:
                continue
            cands = [h[-j * p] + (mh[-1] - mh[-1 - j * p]) for j in (1, 2, 3) if n >= j * p + 1]
            cands.sort()
            k = len(cands)
            out[f"season{p}"] = cands[k // 2] if k % 2 else 0.5 * (cands[k // 2 - 1] + cands[k // 2])
        return out

    def _point_deviation(self, x: float) -> tuple[float, dict[str, float], float, bool]:
        preds = self._forecasts()
        errs = {k: x - v for k, v in preds.items()}
        ready = [(self.fc[k].scale, k) for k in errs if k in self.fc and self.fc[k].count >= 16]
        if ready:
            best = min(s for s, _ in ready)
            fl = self._floor(x)
            z = min(abs(errs[k]) / (_MAE_SD * s + fl) for s, k in ready if s <= self.explain_ratio * best)
            self._best = min(ready)[1]
            expected = preds[self._best]
            self.last_scale = _MAE_SD * self.fc[self._best].scale
        elif len(self.window) >= 3:
            m = self.window.median()
            z = abs(x - m) / (_MAD_SD * self.window.mad(m) + self._floor(m))
            expected = m
            self.last_scale = _MAD_SD * self.window.mad(m)
        else:
            z, expected = 0.0, x
        return min(z, 1e6), errs, expected, bool(ready)

    def _shift_deviation(self, x: float) -> float | None:
        """Median error of the last `short` points against the Holt forecast made before them."""
        k = self.short.size
        if len(self.snapshots) < k or self.fc["holt"].count < 16:
            return None
        level, trend = self.snapshots[0]  # state before the oldest of the last k points
        vals = list(self.short.fifo)[1:] if len(self.short) == k else list(self.short.fifo)
        vals.append(x)
        m = len(vals)
        res = sorted(v - (level + (j + 1 + k - m) * trend) for j, v in enumerate(vals))
        med = res[m // 2] if m % 2 else 0.5 * (res[m // 2 - 1] + res[m // 2])
        sd = _MAE_SD * self.fc["holt"].scale * 1.25 / math.sqrt(m)
        return min(abs(med) / (sd + self._floor(x)), 1e6)

    def _slow_deviation(self, x: float) -> float | None:
        """Median of the last `recent` points against the median of an older, longer window (ramps)."""
        self.recent.push(x)
        lagged = self.lag.popleft() if len(self.lag) == self.lag.maxlen else None
        self.lag.append(x)
        if lagged is not None:
            self.older.push(lagged)
        if len(self.older) < self.older.size:
            return None
        ml = self.older.median()
        if self.n % 16 == 0 or self._older_mad is None:
            self._older_mad = self.older.mad(ml)
        sd = _MAD_SD * self._older_mad * 1.25 / math.sqrt(self.recent.size)
        return min(abs(self.recent.median() - ml) / (sd + self._floor(ml)), 1e6)

    # -- learning --------------------------------------------------------------------------------
    def _learn(
        self, x: float, z_point: float | None, z_shift: float | None, errs: dict[str, float]
    ) -> None:
        if z_point is not None:
            self.cal_point.update(z_point)
        if z_shift is not None:
            self.cal_shift.update(z_shift)
        for k, e in errs.items():
            self.fc.setdefault(k, _Forecaster(k)).record(e)
        if self.n == 0:
            self.level, self.trend = x, 0.0
            self.snapshots.append((x, 0.0))
        else:
            e = x - (self.level + self.trend)
            s = self.fc["holt"].scale
            if self.fc["holt"].count >= 16:
                lim = 3.0 * _MAE_SD * s
                e = max(-lim, min(lim, e))
            self.level += self.trend + 0.3 * e
            self.trend += 0.03 * e
        self.snapshots.append((self.level, self.trend))
        self.short.push(x)
        self.window.push(x)
        self.hist.append(x)
        self.med_hist.append(self.window.median())
        self.n += 1
        keep = 3 * max(self._all_periods(), default=0) + 2
        if len(self.hist) > 2 * keep + 4096:
            cut = len(self.hist) - keep - 4096
            del self.hist[:cut]
            del self.med_hist[:cut]
        if self.n >= 512 and self.n % self.acf_every == 0:
            self._refresh_acf()

    def _all_periods(self) -> list[int]:
        ps = list(self.periods)
        if self.acf_p is not None and self.acf_p not in ps:
            ps.append(self.acf_p)
        return ps

    def _refresh_acf(self) -> None:
        tail = np.asarray(self.hist[-8192:], dtype=float)
        p = acf_period(tail)
        if p is not None and p <= self.max_period and p != self.acf_p:
            self.acf_p = p
            self.fc.pop(next((k for k in self.fc if k.startswith("season") and k != f"season{p}"
                              and int(k[6:]) not in self.periods), ""), None)

    def _track_time(self, t: float) -> None:
        if self.last_t is not None and len(self.dts) < 101:
            d = t - self.last_t
            if d > 0:
                self.dts.append(d)
                if len(self.dts) in (16, 101):
                    self.dt = float(np.median(self.dts))
                    self.periods = calendar_periods(self.dt, max_points=self.max_period)
        self.last_t = t


def backtest_scores(rows: Iterable[tuple[float, float]]) -> Iterator[float]:
    """Score each (timestamp, value) row causally with a fresh StreamingSeriesDetector."""
    det = StreamingSeriesDetector()
    for ts, v in rows:
        yield det.update(ts, v)
