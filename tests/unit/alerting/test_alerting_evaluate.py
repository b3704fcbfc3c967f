"""Rule state machines: one "firing" and one "resolved" per episode, `for_s` respected, anomaly filters."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from analytics.alerting.evaluate import RuleState, Transition, repeat_due, step_anomaly, step_threshold
from analytics.alerting.rules import AlertRuleSpec, parse_rule

HOOK = {"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": "s"}


def rule(**over: Any) -> AlertRuleSpec:
    data: dict[str, Any] = {
        "name": "slow",
        "function": "fn",
        "kind": "threshold",
        "channels": [HOOK],
        "metric": "duration_ms",
        "aggregate": "p95",
        "op": ">",
        "value": 100,
        "window_s": 60,
    }
    data.update(over)
    return parse_rule(data)


def anomaly_rule(**over: Any) -> AlertRuleSpec:
    return parse_rule({"name": "odd", "function": "fn", "kind": "anomaly", "channels": [HOOK], **over})


def run(spec: AlertRuleSpec, series: Iterable[tuple[float, float | None]]) -> list[tuple[float, Transition]]:
    """Feed (time, value) samples; return the transitions with their times."""
    ids = (f"ep{i}" for i in itertools.count(1))
    state = RuleState.initial(0.0)
    out: list[tuple[float, Transition]] = []
    for now, value in series:
        state, t = step_threshold(spec, state, value, now, new_id=lambda: next(ids))
        if t:
            out.append((now, t))
    return out


def test_fires_once_and_resolves_once_per_episode_without_for() -> None:
    series = [(t, v) for t, v in enumerate([10, 150, 160, 170, 90, 80, 200, 210, 50])]
    assert run(rule(), series) == [(1, "firing"), (4, "resolved"), (6, "firing"), (8, "resolved")]


def test_episode_id_and_fire_time_survive_into_the_resolved_state() -> None:
    spec, ids = rule(), iter(["a", "b"])
    s = RuleState.initial(0)
    s, t = step_threshold(spec, s, 500, 10, new_id=lambda: next(ids))
    assert t == "firing" and s.state == "firing" and s.episode_id == "a" and s.fired_at == 10 and s.value == 500
    s, t = step_threshold(spec, s, 600, 20, new_id=lambda: next(ids))
    assert t is None and s.episode_id == "a" and s.value == 600
    s, t = step_threshold(spec, s, 1, 30, new_id=lambda: next(ids))
    assert t == "resolved" and s.state == "normal" and s.episode_id == "a" and s.fired_at == 10 and s.since == 30
    s, t = step_threshold(spec, s, 700, 40, new_id=lambda: next(ids))
    assert t == "firing" and s.episode_id == "b"


def test_for_s_holds_the_rule_pending() -> None:
    spec = rule(for_s=30)
    s = RuleState.initial(0)
    s, t = step_threshold(spec, s, 500, 10)
    assert (s.state, t, s.since) == ("pending", None, 10)
    s, t = step_threshold(spec, s, 500, 39.9)
    assert (s.state, t, s.since) == ("pending", None, 10)
    s, t = step_threshold(spec, s, 500, 40)
    assert (s.state, t, s.fired_at) == ("firing", "firing", 40)


def test_a_breach_shorter_than_for_s_never_fires() -> None:
    series = [(0, 500), (10, 500), (20, 50), (30, 500), (50, 500), (55, 10)]
    assert run(rule(for_s=30), series) == []
    assert run(rule(for_s=30), [*series, (60, 500), (89, 500), (90, 500), (91, 1)]) == [
        (90, "firing"),
        (91, "resolved"),
    ]


def test_no_data_counts_as_condition_false() -> None:
    assert run(rule(), [(0, 500), (1, None), (2, None), (3, 500)]) == [
        (0, "firing"),
        (1, "resolved"),
        (3, "firing"),
    ]
    assert run(rule(op="<", value=1), [(0, None), (1, None)]) == []


@pytest.mark.parametrize(
    ("op", "value", "fires"),
    [(">", 100, False), (">", 99.9, True), (">=", 100, True), ("<", 100, False), ("<=", 100, True), ("<", 101, True)],
)
def test_comparison_operators(op: str, value: float, fires: bool) -> None:
    assert bool(run(rule(op=op, value=value), [(0, 100)])) is fires


def test_step_threshold_refuses_an_anomaly_rule() -> None:
    with pytest.raises(ValueError):
        step_threshold(anomaly_rule(), RuleState.initial(0), 1.0, 1)


def an(at: float | str, kind: str = "duration", score: float = 0.9, function: str = "fn") -> dict[str, Any]:
    return {"id": f"a-{at}", "function": function, "kind": kind, "score": score, "detected_at": at}


def run_anomaly(
    spec: AlertRuleSpec, steps: Sequence[tuple[float, list[dict[str, Any]]]], quiet_s: float = 300
) -> list[tuple[float, Transition]]:
    state = RuleState.initial(0.0)
    out: list[tuple[float, Transition]] = []
    for now, window in steps:
        state, t = step_anomaly(spec, state, window, now, quiet_s=quiet_s)
        if t:
            out.append((now, t))
    return out


def test_anomaly_fires_once_while_anomalies_keep_coming_and_resolves_after_quiet() -> None:
    a1, a2, a3 = an(10), an(20), an(70)
    steps = [(5, []), (11, [a1]), (21, [a1, a2]), (71, [a1, a2, a3]), (300, [a2, a3]), (369, [a3]), (370, [a3])]
    assert run_anomaly(anomaly_rule(), steps) == [(11, "firing"), (370, "resolved")]


def test_the_same_anomaly_seen_again_after_resolving_does_not_start_a_new_episode() -> None:
    a1 = an(10)
    steps = [(11, [a1]), (400, [a1]), (500, [a1]), (600, [a1, an(550)])]
    assert run_anomaly(anomaly_rule(), steps) == [(11, "firing"), (400, "resolved"), (600, "firing")]


def test_anomalies_before_the_rule_existed_are_ignored() -> None:
    spec, state = anomaly_rule(), RuleState.initial(100.0)
    state, t = step_anomaly(spec, state, [an(50), an(99)], 101)
    assert t is None and state.state == "normal"


def test_anomaly_state_records_episode_start_and_latest_score() -> None:
    spec = anomaly_rule()
    s, t = step_anomaly(spec, RuleState.initial(0), [an(12, score=0.7), an(10, score=0.95)], 13, new_id=lambda: "e1")
    assert t == "firing" and s.episode_id == "e1" and s.fired_at == 10 and s.last_match_at == 12 and s.value == 0.7
    s, t = step_anomaly(spec, s, [an(40, score=0.99)], 41)
    assert t is None and s.last_match_at == 40 and s.value == 0.99


def test_anomaly_kind_filter() -> None:
    spec = anomaly_rule(anomaly_kinds=["memory", "cpu"])
    assert run_anomaly(spec, [(11, [an(10, kind="duration")])]) == []
    assert run_anomaly(spec, [(11, [an(10, kind="duration"), an(10.5, kind="cpu")])]) == [(11, "firing")]


def test_anomaly_min_score_filter() -> None:
    spec = anomaly_rule(min_score=0.8)
    assert run_anomaly(spec, [(11, [an(10, score=0.79)])]) == []
    assert run_anomaly(spec, [(11, [an(10, score=0.8)])]) == [(11, "firing")]
    assert run_anomaly(spec, [(11, [{"function": "fn", "kind": "x", "detected_at": 10}])]) == []


def test_an_anomaly_of_another_function_is_ignored() -> None:
    assert run_anomaly(anomaly_rule(), [(11, [an(10, function="other")])]) == []


def test_low_scores_do_not_keep_an_episode_alive() -> None:
    spec = anomaly_rule(min_score=0.8)
    steps = [(11, [an(10)]), (200, [an(150, score=0.1)]), (310, [an(300, score=0.2)])]
    assert run_anomaly(spec, steps) == [(11, "firing"), (310, "resolved")]


def test_iso_detected_at_is_understood() -> None:
    spec = anomaly_rule()
    s, t = step_anomaly(spec, RuleState.initial(0), [an("1970-01-01T00:00:10Z")], 11)
    assert t == "firing" and s.fired_at == 10


def test_repeat_due_only_while_firing_with_an_interval() -> None:
    spec = anomaly_rule(repeat_interval_s=60)
    firing = RuleState(state="firing", since=100, episode_id="e", fired_at=100)
    assert not repeat_due(anomaly_rule(), firing, 100, 1000)
    assert not repeat_due(spec, firing, 100, 159)
    assert repeat_due(spec, firing, 100, 160)
    assert not repeat_due(spec, RuleState.initial(0), None, 1000)
