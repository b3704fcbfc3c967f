"""The streaming time-series detector: level shifts without trailing alarms, seasonal slow drifts, heavy tails."""

from __future__ import annotations

import pickle

import numpy as np

from analytics.detection import StreamingSeriesDetector
from analytics.detection.calibrate import TailCalibrator, gpd_shape


def _scores(x: np.ndarray, dt: float = 300.0) -> np.ndarray:
    det = StreamingSeriesDetector()
    t = 1_600_000_000 + dt * np.arange(len(x))
    return np.array([det.update(a, b) for a, b in zip(t.tolist(), x.tolist(), strict=True)])


def test_slow_drift_in_a_daily_seasonal_series_ranks_high_without_flooding() -> None:
    rng = np.random.default_rng(5)
    n = 6000
    t = np.arange(n)
    x = 200 + 30 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 5, n)  # 5-minute points, daily cycle of +-6 sd
    x[4500:4900] += np.linspace(0, 35, 400)  # a 7-sd ramp over 400 points
    x[4900:] += 35
    s = _scores(x)
    assert (s[600:4500] >= 0.5).sum() <= 1
    assert s[4500:4930].max() >= np.quantile(s[600:4500], 0.999)  # among the top 0.1 % of the normal stretch


def test_heavy_tailed_noise_does_not_flood() -> None:
    rng = np.random.default_rng(2)
    x = 50 + rng.standard_t(3, 20000)  # Student-t3: many "6-sigma" values that are just noise
    s = _scores(x, dt=60.0)
    assert (s[500:] >= 0.5).sum() <= 5  # ~2.5 per 10,000 points


def test_state_round_trip_mid_stream_is_identical() -> None:
    rng = np.random.default_rng(3)
    x = 10 + np.sin(np.arange(3000) / 20) + rng.normal(0, 0.2, 3000)
    a = StreamingSeriesDetector()
    for i in range(2000):
        a.update(i * 60.0, float(x[i]))
    b = pickle.loads(pickle.dumps(a))
    assert [a.update(i * 60.0, float(x[i])) for i in range(2000, 3000)] == [
        b.update(i * 60.0, float(x[i])) for i in range(2000, 3000)]


def test_gpd_shape_is_zero_for_exponential_and_positive_for_heavy_tails() -> None:
    assert gpd_shape(np.log(10) / np.log(2)) == 0.0
    assert abs(gpd_shape((10**0.25 - 1) / (2**0.25 - 1)) - 0.25) < 1e-6
    assert gpd_shape(100.0) == 0.5
    light, heavy = TailCalibrator(), TailCalibrator()
    rng = np.random.default_rng(0)
    for a, b in zip(np.abs(rng.normal(0, 1, 5000)), np.abs(rng.standard_t(3, 5000)), strict=True):
        light.update(float(a))
        heavy.update(float(b))
    assert light.pvalue(6.0) < 1e-5 and heavy.pvalue(6.0) > 1e-3  # true tails: 2e-9 and 9e-3
