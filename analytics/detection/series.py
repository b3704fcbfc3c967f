"""Causal streaming time-series anomaly scorer for per-interval aggregates, live and in backtests.

Per point, several cheap forecasters predict the value from the past only: the median of a short
window, a robust Holt level+trend, and seasonal-naive forecasts at each candidate period (calendar
cycles derived from the sampling interval, plus the autocorrelation peak once enough history exists).
Each forecaster's error scale is tracked (EW mean absolute error, winsorised); the point deviation is
the smallest standardised error among the forecasters that are about as good as the best one, so a
value that any good model explains is not an anomaly (`explain_ratio`; 1.0 = the best one only, which
measured better). A second component compares the median of the last 8 points with the Holt forecast
made before them (level shifts), a third the median of the last 16 with the median of an older
256-point window (ramps and slow drifts) -- what no single point reveals. The slow component works on
deseasonalised values once removing a period (calendar or autocorrelation) measurably narrows its normal
spread (value minus the median over 3 periods of "value minus trailing one-period mean"), and after it
detects it re-bases its reference on the new level, so a lasting shift alarms once, not for ~190 points.
A fourth (`longwin.LongWindow`) is the value's distance from the mean of the last 2,000 values in standard
deviations: step-like series that switch between familiar levels have a wide spread there, so a level
beyond all of them or a leak carrying the series out of its range stands out where local forecasts adapt.
Each component's deviation is turned into a tail probability under that component's own past deviations
(TailCalibrator; the shift, slow and long ones are fed late and not from anomalies, which would fatten the
tails the next anomaly is judged by), combined with a weighted Bonferroni minimum, in log10 (no underflow).

That local surprise (-log10 p) is amplified, up to doubled, by how new the value is to the series' last
4,096 values (`novelty.ValueRarity`): a jump to a familiar level ranks below a jump to a level never
seen, and novelty alone (a trend reaching new highs) never alarms. Deviations are measured no finer than
half the series' quantum, so quantised series do not produce infinite z-scores; a series that never
changed has no quantum yet, and its first change is measured against a hundredth of its level. `EpisodeGate`
then holds back the probationary start and every point of an episode after its first alarm -- unless a
record far past the episode's largest excursion escalates it -- and closes the episode once the series is
back to normal or has settled into a new one; the reported surprise is mapped to [0, 1) by s / (s + 4):
0.5 (ALARM_SCORE) ~ one in 10,000 normal points, no saturation, so the order of the highest scores is
the order of their surprise.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
from scipy.stats import t as student_t

from analytics.detection.calibrate import ALARM_LOG10P, ALARM_SCORE, TailCalibrator, surprise_to_score
from analytics.detection.episodes import EpisodeGate
from analytics.detection.longwin import LongWindow
from analytics.detection.novelty import ValueRarity
from analytics.detection.periods import acf_period, calendar_periods
from analytics.detection.windows import SortedWindow

_MAD_SD = 1.4826  # MAD -> standard deviation under normality
_MAE_SD = 1.2533  # mean absolute error -> standard deviation under normality
_LN10 = math.log(10.0)
_LOG2 = math.log10(2.0)
_LOG_W = math.log10(0.25)  # the Bonferroni weight of the shift and slow components
_FLAT_REL = 0.01  # a never-changing series' deviation floor, as a share of its level
__all__ = ["ALARM_SCORE", "StreamingSeriesDetector", "backtest_scores"]


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

    VERSION = 3
    NAME = "streaming-series"
    # defaults for states pickled by VERSION 1 (no deseasonalising of the slow component)
    season_p: int | None = None
    _ssum = 0.0
    rebases = 0
    _frozen_until = -(10**9)
    _periods_all: list[int] | None = None  # cached `_all_periods()`
    _keep: int | None = None  # cached history length the seasonal lags need

    def __init__(
        self,
        window: int = 31,
        short: int = 8,
        max_period: int = 20000,
        acf_every: int = 1024,
        explain_ratio: float = 1.0,
        slow_recent: int = 16,
        slow_lag: int = 64,
        slow_window: int = 256,
        quarantine: int = 32,
        probation_rows: int = 750,
        probation_s: float = 86400.0,
        long_window: int = 2000,
        long_weight: float = 0.25,
    ):
        self.window = SortedWindow(window)
        self.short = SortedWindow(short)
        self.max_period = max_period
        self.acf_every = acf_every
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
        self.season_p = None  # the period the slow component removes (None: raw values)
        self._ssum = 0.0  # sum of the last season_p raw values
        self._r: deque[float] = deque()  # value minus its trailing one-period mean, for the last 3 periods
        self.rebases = 0
        self._frozen_until = -(10**9)  # no calibration updates before this point count
        self._quarantine: deque[tuple[float | None, float | None, float | None]] = deque(maxlen=quarantine)
        self.quantum = math.inf  # smallest non-zero step between consecutive values seen
        self.rarity = ValueRarity()
        self.cal_final = TailCalibrator(max_shape=0.2)
        self.gate = EpisodeGate(probation_rows=probation_rows, probation_s=probation_s)
        self.long = LongWindow(long_window)
        self.long_weight = long_weight
        self.cal_long = TailCalibrator()

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickle, giving a VERSION 1 or 2 state the attributes added since (already past probation)."""
        self.__dict__.update(state)
        if "_r" not in state:
            self._r = deque()
        if "_quarantine" not in state:
            self._quarantine = deque(maxlen=32)
        if "gate" not in state:
            steps = np.abs(np.diff(np.asarray(self.hist[-4096:], dtype=float)))
            self.quantum = float(steps[steps > 0].min()) if (steps > 0).any() else math.inf
            self.rarity = ValueRarity()
            for v in self.hist[-self.rarity.values.size:]:
                self.rarity.push(v)
            self.gate = EpisodeGate()
            self.cal_final = TailCalibrator(max_shape=0.2)
            self.gate.rows, self.gate.t0 = self.n, -math.inf
        if "long" not in state:
            self.long, self.long_weight, self.cal_long = LongWindow(), 0.25, TailCalibrator()
            self._quarantine = deque(((a, b, None) for a, b, *_ in self._quarantine), maxlen=self._quarantine.maxlen)
            for v in self.hist[-self.long.size:]:
                self.long.push(v)

    # -- the public step -------------------------------------------------------------------------
    def update(self, timestamp: float, value: float) -> float:
        """Score `value` at `timestamp` from the points seen so far, then learn it."""
        x = float(value)
        if not math.isfinite(x):
            return 0.0
        t = float(timestamp)
        self._track_time(t)
        fl = self._floor(x)  # the quantum only changes in `_learn`
        z_point, errs, expected, warm = self._point_deviation(x, fl)
        z_shift = self._shift_deviation(x, fl)
        z_slow = self._slow_deviation(x)
        z_long = self.long.deviation(x, fl)
        if warm:
            lp = self.cal_point.log10_pvalue(z_point)
        elif z_point > 0:  # a handful of points: Student t with the window's degrees of freedom
            lp = min(0.0, float(student_t.logsf(z_point, max(1, len(self.window) - 1))) / _LN10 + _LOG2)
        else:
            lp = 0.0
        # weighted Bonferroni over the components (in log10): the point gets what the others leave
        local = 0.0
        w_rest = 0.0
        if z_shift is not None:
            local = max(local, -self.cal_shift.log10_pvalue(z_shift) + _LOG_W)
            w_rest += 0.25
        if z_slow is not None:
            lp_slow = self.cal_slow.log10_pvalue(z_slow)
            local = max(local, -lp_slow + _LOG_W)
            w_rest += 0.25
            if lp_slow - _LOG_W < -ALARM_LOG10P:
                self._rebase_slow()
        lw = self.long_weight
        if z_long is not None and lw > 0:
            local = max(local, -self.cal_long.log10_pvalue(z_long) + math.log10(lw))
            w_rest += lw
        local = max(local, -(lp - math.log10(1.0 - w_rest))) if self.n >= 2 else 0.0
        # a value also new to the series' history is more surprising; novelty alone is not an anomaly
        novel = self.rarity.surprise(x, fl) if self.n >= 2 else 0.0
        raw = local + min(novel, local)
        # and that combination is itself calibrated on the series' past combinations: outside episodes, and
        # inside one once it has lasted the slow span (the event is over; what persists is the new normal:
        # a recurring pattern, a new level), its loud points excepted
        surprise = -self.cal_final.log10_pvalue(raw) if self.n >= 2 else 0.0
        g = self.gate
        if not g.active or (surprise < ALARM_LOG10P and g.age >= self.slow_span()):
            self.cal_final.update(raw)
        reported = self.gate.gate(t, surprise, x, expected, self.rarity.is_record(x))
        self.last_detail = {"z_point": z_point, "z_shift": z_shift or 0.0, "z_slow": z_slow or 0.0,
                            "local": local, "novelty": novel, "raw": raw, "surprise": surprise, "reported": reported,
                            "expected": expected}
        self._calibrate(z_point if warm else None, z_shift, z_slow, z_long, local > ALARM_LOG10P)
        self._learn(x, errs)
        self.rarity.push(x)
        self.long.push(x)
        return surprise_to_score(reported)

    def band(self, k: float = 4.0) -> tuple[float, float]:
        """Expected range of the last scored point: forecast +- k error deviations."""
        e = float(self.last_detail.get("expected", 0.0))
        return e - k * self.last_scale, e + k * self.last_scale

    # -- components ------------------------------------------------------------------------------
    def _floor(self, ref: float) -> float:
        """Smallest deviation scale: half the series' quantum (its smallest step seen).

        A series that has never changed has no scale of its own: its first change is measured against a
        hundredth of its level (of the new value if the level is zero), so a small first step ranks below
        a jump to many times the value instead of both being infinitely many deviations away.
        """
        q = self.quantum
        if math.isfinite(q):
            return 1e-9 + 1e-9 * abs(ref) + 0.5 * q
        level = self.window.median() if len(self.window) else 0.0
        return 1e-9 + _FLAT_REL * (abs(level) or abs(ref))

    def _forecasts(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.n == 0:
            return out
        out["median"] = self.window.median()
        out["holt"] = self.level + self.trend
        h, mh, n = self.hist, self.med_hist, self.n
        m = mh[-1]
        for p in self._all_periods():
            if n < 2 * p + 1:
                continue
            a, b = h[-p] + (m - mh[-1 - p]), h[-2 * p] + (m - mh[-1 - 2 * p])
            out[_season_name(p)] = _median3(a, b, h[-3 * p] + (m - mh[-1 - 3 * p])) if n >= 3 * p + 1 else 0.5 * (a + b)
        return out

    def _point_deviation(self, x: float, fl: float) -> tuple[float, dict[str, float], float, bool]:
        preds = self._forecasts()
        errs = {k: x - v for k, v in preds.items()}
        fc = self.fc
        ready = [(f.scale, k) for k in errs if (f := fc.get(k)) is not None and f.count >= 16]
        if ready:
            top = min(ready)
            lim = self.explain_ratio * top[0]
            z = math.inf
            for sc, k in ready:
                if sc <= lim:
                    zk = abs(errs[k]) / (_MAE_SD * sc + fl)
                    if zk < z:
                        z = zk
            self._best = top[1]
            expected = preds[self._best]
            self.last_scale = _MAE_SD * self.fc[self._best].scale
        elif len(self.window) >= 3:
            m = self.window.median()
            z = abs(x - m) / (_MAD_SD * self.window.mad(m) + self._floor(m))
            expected = m
            self.last_scale = _MAD_SD * self.window.mad(m)
        else:
            z, expected = 0.0, x
        return min(z, 1e15), errs, expected, bool(ready)

    def _shift_deviation(self, x: float, fl: float) -> float | None:
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
        return min(abs(med) / (sd + fl), 1e15)

    def _slow_deviation(self, x: float) -> float | None:
        """Median of the last `recent` points against the median of an older, longer window (ramps).

        Both windows hold deseasonalised values once a season is worth removing (`_refresh_season`).
        """
        y = self._deseason(x)
        self.recent.push(y)
        lagged = self.lag.popleft() if len(self.lag) == self.lag.maxlen else None
        self.lag.append(y)
        if lagged is not None:
            self.older.push(lagged)
        if len(self.older) < self.older.size:
            return None
        ml = self.older.median()
        if self.n % 16 == 0 or self._older_mad is None:
            self._older_mad = self.older.mad(ml)
        sd = _MAD_SD * self._older_mad * 1.25 / math.sqrt(self.recent.size)
        return min(abs(self.recent.median() - ml) / (sd + self._floor(ml)), 1e15)

    def _rebase_slow(self) -> None:
        """After a slow-component detection, move its reference to the new level (no trailing alarms).

        The older window is shifted by (recent median - older median), keeping its spread; the lag queue
        is emptied, so the older window next takes values seen after the detection.
        """
        if len(self.older) == 0 or len(self.recent) == 0:
            return
        delta = self.recent.median() - self.older.median()
        vals = [v + delta for v in self.older.fifo]
        self.older = SortedWindow(self.older.size)
        for v in vals:
            self.older.push(v)
        self.lag.clear()
        self.rebases += 1

    def _deseason(self, x: float) -> float:
        """x minus its seasonal offset: the median, over the last 3 periods, of value minus trailing period mean."""
        p = self.season_p
        if p is None or len(self.hist) < p:
            return x
        self._ssum += x - self.hist[-p]
        r = x - self._ssum / p
        rs = self._r
        lags = [rs[-j * p] for j in (1, 2, 3) if len(rs) >= j * p]
        rs.append(r)
        if not lags:
            return x
        lags.sort()
        k = len(lags)
        return x - (lags[k // 2] if k % 2 else 0.5 * (lags[0] + lags[1]))

    def _refresh_season(self) -> None:
        """Pick the period (if any) whose removal makes the slow statistic's normal spread smallest."""
        h = np.asarray(self.hist, dtype=float)
        span = self.slow_span()
        best_p, best = None, _slow_spread(h[-8192:], span)
        cur = None
        for p in self._all_periods():
            if len(h) < 3 * p + span + 256:
                continue
            y = _deseasoned(h[-(8192 + 4 * p):], p)
            spread = _slow_spread(y[~np.isnan(y)][-8192:], span)
            if p == self.season_p:
                cur = spread
            if spread < 0.8 * best:
                best_p, best = p, spread
        if best_p == self.season_p or (cur is not None and best >= 0.9 * cur):
            return  # hysteresis: switch only for a clear gain
        self._set_season(best_p, h)

    def slow_span(self) -> int:
        """Points the slow component looks back over."""
        return self.recent.size + (self.lag.maxlen or 0) + self.older.size

    def _set_season(self, p: int | None, h: np.ndarray) -> None:
        """Start removing season `p` (or none): refill the slow windows from history, restart their calibration."""
        self.season_p = p
        self._periods_changed()
        span = self.slow_span()
        if p is None:
            y = h[-span:]
            self._r = deque()
        else:
            y = _deseasoned(h[-(span + 4 * p):], p)
            y = np.where(np.isnan(y), h[-len(y):], y)[-span:]
            c = h[-(3 * p + p):]
            r = c[p - 1:] - _moving_mean(c, p)
            self._r = deque(r[-3 * p:].tolist(), maxlen=3 * p)
            self._ssum = float(h[-p:].sum())
        self.recent = SortedWindow(self.recent.size)
        self.older = SortedWindow(self.older.size)
        self.lag = deque(maxlen=self.lag.maxlen)
        for v in y.tolist():
            self.recent.push(v)
            lagged = self.lag.popleft() if len(self.lag) == self.lag.maxlen else None
            self.lag.append(v)
            if lagged is not None:
                self.older.push(lagged)
        self._older_mad = None
        self.cal_slow = TailCalibrator()

    # -- learning --------------------------------------------------------------------------------
    def _calibrate(self, z_point: float | None, z_shift: float | None, z_slow: float | None, z_long: float | None,
                   alarm: bool) -> None:
        """Feed the components' deviations to their calibrators; the window components' late and not from anomalies.

        The point deviation is learnt at once (an anomaly is one point, and heavy-tailed noise must be seen
        to be calibrated). The shift and slow deviations of one event are hundreds of correlated large
        values: they enter `quarantine` points late, an alarm discards the deviations still in quarantine
        (the run-up to it) and freezes calibration for
        `slow_span()` points (the event itself), so an anomaly does not fatten the tails that the next one is
        judged by. A freeze does not start within `slow_span()` points of the last one's end, so a lasting
        new regime is still learnt.
        """
        if z_point is not None:
            self.cal_point.update(z_point)
        q = self._quarantine
        if alarm:
            q.clear()
            span = self.slow_span()
            if self.n >= self._frozen_until + span:
                self._frozen_until = self.n + span
        if self.n < self._frozen_until:
            return
        q.append((z_shift, z_slow, z_long))
        if len(q) < (q.maxlen or 0):
            return
        zsh, zsl, zlo = q.popleft()
        if zsh is not None:
            self.cal_shift.update(zsh)
        if zsl is not None:
            self.cal_slow.update(zsl)
        if zlo is not None:
            self.cal_long.update(zlo)

    def _learn(self, x: float, errs: dict[str, float]) -> None:
        if self.hist:
            d = abs(x - self.hist[-1])
            if 0.0 < d < self.quantum:
                self.quantum = d
        fc = self.fc
        for k, e in errs.items():  # `_Forecaster.record`, inlined (the hottest loop)
            f = fc.get(k)
            if f is None:
                f = fc[k] = _Forecaster(k)
            a = abs(e)
            if f.count >= 16:
                cap = 4.0 * f.scale
                if a > cap:
                    a = cap
                f.scale += 0.02 * (a - f.scale)
            else:
                f.scale += (a - f.scale) / (f.count + 1)
            f.count += 1
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
        keep = self._keep
        if keep is None:
            keep = self._keep = 3 * max([*self._all_periods(), self.season_p or 0]) + 2
        if len(self.hist) > 2 * keep + 4096:
            cut = len(self.hist) - keep - 4096
            del self.hist[:cut]
            del self.med_hist[:cut]
        if self.n >= 512 and self.n % self.acf_every == 0:
            self._refresh_acf()
            self._refresh_season()
        if self.season_p is not None and self.n % 4096 == 0:  # no float drift in the running sum
            self._ssum = float(np.sum(self.hist[-self.season_p:]))

    def _all_periods(self) -> list[int]:
        ps = self._periods_all
        if ps is None:
            ps = list(self.periods)
            if self.acf_p is not None and self.acf_p not in ps:
                ps.append(self.acf_p)
            self._periods_all = ps
        return ps

    def _periods_changed(self) -> None:
        """Forget what was derived from the periods (they or the season changed)."""
        self._periods_all = None
        self._keep = None

    def _refresh_acf(self) -> None:
        tail = np.asarray(self.hist[-8192:], dtype=float)
        p = acf_period(tail)
        if p is not None and p <= self.max_period and p != self.acf_p:
            self.acf_p = p
            self._periods_changed()
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
                    self._periods_changed()
        self.last_t = t


def _median3(a: float, b: float, c: float) -> float:
    """Median of three values (what sorting them and taking the middle one gives)."""
    lo, hi = (a, b) if a <= b else (b, a)
    return hi if c >= hi else (c if c >= lo else lo)


_SEASON_NAMES: dict[int, str] = {}


def _season_name(p: int) -> str:
    """The forecaster key of the seasonal-naive forecast at period p (interned)."""
    name = _SEASON_NAMES.get(p)
    if name is None:
        name = _SEASON_NAMES[p] = f"season{p}"
    return name


def _moving_mean(h: np.ndarray, p: int) -> np.ndarray:
    """Means of every `p` consecutive values (len(h) - p + 1 of them)."""
    c = np.r_[0.0, np.cumsum(h)]
    return np.asarray((c[p:] - c[:-p]) / p)


def _deseasoned(h: np.ndarray, p: int) -> np.ndarray:
    """Vectorised `_deseason` over a history (NaN where no period of offsets exists yet)."""
    n = len(h)
    y = np.full(n, np.nan)
    if n < p + 1:
        return y
    r = np.full(n, np.nan)
    r[p - 1:] = h[p - 1:] - _moving_mean(h, p)
    lags = np.full((3, n), np.nan)
    for j in (1, 2, 3):
        if n > j * p:
            lags[j - 1, j * p:] = r[: n - j * p]
    have = ~np.isnan(lags)
    cnt = have.sum(axis=0)
    total = np.where(have, lags, 0.0).sum(axis=0)
    off = np.where(cnt == 3, np.median(lags, axis=0), total / np.maximum(cnt, 1))
    ok = cnt > 0
    y[ok] = h[ok] - off[ok]
    return y


def _slow_spread(y: np.ndarray, span: int, recent: int = 16, older: int = 256) -> float:
    """Robust spread of (mean of the last `recent`) - (mean of an older window), the slow statistic's null."""
    if len(y) < span + 64:
        return math.inf
    c = np.r_[0.0, np.cumsum(y)]
    t = np.arange(span, len(y) + 1)
    d = (c[t] - c[t - recent]) / recent - (c[t - span + older] - c[t - span]) / older
    med = float(np.median(d))
    return float(np.median(np.abs(d - med))) + 1e-12


def backtest_scores(rows: Iterable[tuple[float, float]]) -> Iterator[float]:
    """Score each (timestamp, value) row causally with a fresh StreamingSeriesDetector."""
    det = StreamingSeriesDetector()
    for ts, v in rows:
        yield det.update(ts, v)
