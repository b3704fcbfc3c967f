"""Season length candidates: calendar periods from the sampling interval, and the autocorrelation peak."""

from __future__ import annotations

import numpy as np

CALENDAR_PERIODS_S = (3600.0, 86400.0, 604800.0)  # hourly jobs, daily and weekly cycles


def calendar_periods(dt: float, min_points: int = 4, max_points: int = 20000) -> list[int]:
    """Calendar cycles expressed in points for a series sampled every `dt` seconds."""
    out: list[int] = []
    if not dt > 0:
        return out
    for period in CALENDAR_PERIODS_S:
        p = int(round(period / dt))
        if min_points <= p <= max_points and abs(p * dt - period) <= 0.05 * period and p not in out:
            out.append(p)
    return out


def acf_period(values: np.ndarray, min_lag: int = 8, min_acf: float = 0.3) -> int | None:
    """Dominant period from the autocorrelation of the linearly detrended series, or None."""
    n = len(values)
    if n < 4 * min_lag:
        return None
    t = np.arange(n, dtype=float)
    y = values - np.polyval(np.polyfit(t, values, 1), t)
    var = float(np.dot(y, y))
    if var <= 0:
        return None
    f = np.fft.rfft(y, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[: n // 3] / var
    if len(acf) <= min_lag + 2:
        return None
    neg = np.nonzero(acf[1:] < 0)[0]
    if len(neg) == 0:
        return None
    start = max(min_lag, int(neg[0]) + 1)
    if start >= len(acf) - 1:
        return None
    lag = start + int(np.argmax(acf[start:]))
    if acf[lag] < min_acf or lag >= len(acf) - 1 or acf[lag] < acf[lag - 1] or acf[lag] < acf[lag + 1]:
        return None
    return lag
