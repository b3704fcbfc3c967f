"""The bench's windowed NAB-like score follows issue 11's rules: never alarming is 0, perfect is 100."""

from __future__ import annotations

import numpy as np

from bench.detection.generate import Event
from bench.detection.windowed import best_threshold, corpus_score, labelled


def _item(n: int, onset: int, alarms: list[int]) -> tuple[np.ndarray, list[Event]]:
    s = np.zeros(n)
    s[alarms] = 0.9
    return s, [Event("x", onset, onset + 5)]


def test_never_alarming_scores_zero_and_an_alarm_at_the_window_start_about_100() -> None:
    s, ev = _item(2000, 1500, [])
    assert corpus_score([labelled(s, ev)], 0.5)["score"] == 0.0
    item = labelled(*_item(2000, 1500, []))
    lo, _ = item.windows[0]
    item.scores[lo] = 0.9
    assert corpus_score([item], 0.5)["score"] > 99.0


def test_a_late_alarm_earns_less_and_a_stray_one_costs() -> None:
    early = labelled(*_item(2000, 1500, [1460]))
    late = labelled(*_item(2000, 1500, [1590]))
    stray = labelled(*_item(2000, 1500, [1460, 600]))
    e, lt, st = (corpus_score([i], 0.5)["score"] for i in (early, late, stray))
    assert e > lt > 0 and st < e


def test_best_threshold_can_choose_never_alarming() -> None:
    rng = np.random.default_rng(1)
    s = np.ones(3000)  # every point tied at the top, the window among them: many false alarms
    s[:100] = rng.random(100) * 0.1
    item = labelled(s, [Event("x", 2000, 2005)])
    assert corpus_score([item], 1.0)["score"] < 0
    assert best_threshold([item])["score"] == 0.0
