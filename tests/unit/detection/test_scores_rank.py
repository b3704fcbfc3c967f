"""Issue 11's properties of the series scores: causal, one per row, one alarm per episode, quiet on
quantised step-like series after probation, and no ties among the highest scores."""

from __future__ import annotations

import pickle

import numpy as np

from analytics.detection import StreamingSeriesDetector, backtest_scores
from analytics.detection.calibrate import ALARM_SCORE


def _rows(x: np.ndarray, dt: float = 300.0) -> list[tuple[float, float]]:
    t = 1_600_000_000 + dt * np.arange(len(x))
    return list(zip(t.tolist(), x.tolist(), strict=True))


def _scores(x: np.ndarray, dt: float = 300.0) -> np.ndarray:
    return np.fromiter(backtest_scores(_rows(x, dt)), float)


def test_scores_are_causal_and_one_per_row() -> None:
    rng = np.random.default_rng(4)
    x = 20 + rng.normal(0, 1, 2500)
    x[1800] += 15
    x[2100:] += 6
    rows = _rows(x)
    full = list(backtest_scores(rows))
    assert len(full) == len(rows) and all(0.0 <= s < 1.0 for s in full)
    for k in (1, 300, 751, 1801, 2200):
        assert list(backtest_scores(rows[:k])) == full[:k]


def test_a_lasting_level_shift_alarms_once() -> None:
    rng = np.random.default_rng(11)
    x = 100 + rng.normal(0, 2, 4000)
    x[2000:] += 20  # a lasting +10 sd shift
    s = _scores(x)
    assert s[2000:2010].max() >= ALARM_SCORE
    assert (s[2000:] >= ALARM_SCORE).sum() == 1  # one alarm, not one per point of the new level


def test_quantised_step_like_series_does_not_alarm_after_probation() -> None:
    rng = np.random.default_rng(8)
    levels = np.array([12.0, 35.0, 60.0])
    x, i = np.empty(6000), 0
    while i < len(x):  # CPU % jumping between familiar levels every few hours, whole percent only
        run = int(rng.integers(20, 150))
        x[i:i + run] = levels[rng.integers(len(levels))]
        i += run
    x = np.clip(np.round(x + rng.normal(0, 0.7, len(x))), 0, 100)
    s = _scores(x)
    probation = 86400 // 300  # the first day of 5-minute rows comes before the first 750 rows
    assert s[:probation].max() == 0.0  # learns, does not alarm
    assert s[probation:].max() < ALARM_SCORE


def test_top_scores_of_a_long_normal_series_are_not_tied() -> None:
    rng = np.random.default_rng(21)
    n = 30000
    x = 50 + 5 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.standard_t(5, n)
    s = _scores(x)[750:]
    top = np.sort(s)[-max(2, len(s) // 1000):]
    assert len(np.unique(top)) > 1 and top.max() < 1.0


def test_a_jump_after_recurring_blips_still_alarms() -> None:
    i = np.arange(4000)
    x = np.where(i < 2500, 2.0, np.where(i % 7 == 0, 2.5, 2.0))
    x[3500:] = 40.0
    s = _scores(x)
    assert s[3500:3510].max() >= ALARM_SCORE
    assert s[3500:3510].max() > s[2500:2510].max()  # 20x the max ranks above the first, merely new blip


def test_an_episode_closes_once_a_recurring_pattern_is_learnt() -> None:
    i = np.arange(4000)
    x = np.where(i < 2500, 2.0, np.where(i % 7 == 0, 2.5, 2.0))
    det = StreamingSeriesDetector()
    active = [det.update(1_600_000_000 + 300.0 * k, float(v)) >= 0 and det.gate.active for k, v in enumerate(x)]
    assert det.gate.episodes >= 1 and any(active[2500:2520])  # the first blips are an episode...
    assert not any(active[3400:])  # ...that ends once the blips are the normal, well before 4000


def test_a_much_larger_excursion_inside_an_episode_alarms_again() -> None:
    rng = np.random.default_rng(12)
    x = 100 + rng.normal(0, 2, 4000)
    x[2000:] += 16  # a lasting +8 sd shift: one episode
    x[2100] += 200  # 100 sd while it lasts: far beyond the shift, must page again
    s = _scores(x)
    assert s[2000:2010].max() >= ALARM_SCORE
    assert s[2100] >= ALARM_SCORE and s[2100] > s[2000:2010].max()
    assert (s[2000:] >= ALARM_SCORE).sum() == 2


def test_a_growing_excursion_does_not_re_alarm_point_after_point() -> None:
    rng = np.random.default_rng(13)
    x = 500 + rng.normal(0, 3, 5000)
    x[3000:3600] += np.linspace(0, 300, 600)  # a leak growing to 100 sd, then a restart
    s = _scores(x)
    assert s[3000:3600].max() >= ALARM_SCORE
    assert (s[3000:] >= ALARM_SCORE).sum() <= 3


def test_a_small_first_change_of_a_flat_series_ranks_below_a_large_one() -> None:
    flat = np.full(3000, 2.0)
    small, large = flat.copy(), flat.copy()
    small[2500] = 2.5
    large[2500] = 40.0
    assert _scores(large)[2500] > _scores(small)[2500]


def test_a_detector_pickled_before_escalation_and_settling_keeps_working() -> None:
    rng = np.random.default_rng(5)
    x = 10 + rng.normal(0, 1, 3000)
    x[2500] += 30
    det = StreamingSeriesDetector()
    for k in range(2000):
        det.update(1_600_000_000 + 300.0 * k, float(x[k]))
    for name in ("ref", "peak_dev", "escalation", "settle_window", "settle_mean", "escalations", "_recent",
                 "_recent_sum", "_loud"):
        det.gate.__dict__.pop(name, None)  # as a state saved by the previous version has it
    old = pickle.loads(pickle.dumps(det))
    s = [old.update(1_600_000_000 + 300.0 * k, float(x[k])) for k in range(2000, 3000)]
    assert s[500] >= ALARM_SCORE and len(s) == 1000


def test_the_first_value_after_a_long_run_of_zeros_scores_below_one() -> None:
    x = np.zeros(3000)
    x[2500] = 5.0  # a metric that reported nothing for days; a value is news, not an infinite deviation
    s = _scores(x)
    assert s[2500] >= ALARM_SCORE and s[2500] < 1.0 and s.max() == s[2500]
