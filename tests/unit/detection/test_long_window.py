"""The long-window component: exact moments over the trailing window, and what it adds to the score."""

from __future__ import annotations

import numpy as np

from analytics.detection import backtest_scores
from analytics.detection.calibrate import ALARM_SCORE
from analytics.detection.longwin import LongWindow


def test_long_window_matches_numpy_over_the_trailing_values() -> None:
    rng = np.random.default_rng(1)
    x = 1e6 + rng.normal(0, 3, 9000)  # a large offset: the running sums must not lose the spread
    w = LongWindow(size=500, min_values=10, resum=1000)
    assert w.deviation(1.0, 0.0) is None
    for i, v in enumerate(x.tolist()):
        if i >= 500 and i % 997 == 0:
            past = x[i - 500:i]
            want = abs(v - past.mean()) / past.std()
            got = w.deviation(v, 0.0)
            assert got is not None and abs(got - want) < 1e-6 * max(1.0, want)
        w.push(v)


def test_a_step_like_series_reaching_a_level_never_seen_alarms() -> None:
    rng = np.random.default_rng(5)
    levels = np.array([8.0, 20.0, 31.0])
    x, i = np.empty(5000), 0
    while i < len(x):  # familiar levels every few hours, then a process pinned far above all of them
        run = int(rng.integers(20, 150))
        x[i:i + run] = levels[rng.integers(len(levels))]
        i += run
    x = np.round(x + rng.normal(0, 0.8, len(x)))
    x[4000:4030] = np.round(rng.uniform(92, 100, 30))
    t = 1_600_000_000 + 300.0 * np.arange(len(x))
    s = np.fromiter(backtest_scores(zip(t.tolist(), x.tolist(), strict=True)), float)
    assert s[4000:4030].max() >= ALARM_SCORE
    assert s[4000:4030].max() > s[300:4000].max()
