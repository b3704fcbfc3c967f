"""Pure, clock-injected rule state machines: normal → pending → firing → normal (Grafana/Prometheus-like).

A step returns the new state and at most one transition. After a transition, the new state's `episode_id`
and `fired_at` describe the episode it belongs to (they stay set after "resolved" until the next episode),
so the caller can build both the firing and the resolved notice from the returned state alone.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from analytics.alerting.rules import AlertRuleSpec

StateName = Literal["normal", "pending", "firing"]
Transition = Literal["firing", "resolved"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass
class RuleState:
    """Where a rule stands; `since` is when it entered `state` (Unix seconds)."""

    state: str
    since: float
    value: float | None = None
    episode_id: str | None = None
    fired_at: float | None = None
    last_match_at: float | None = None

    @classmethod
    def initial(cls, now: float) -> RuleState:
        """A rule that has just been created."""
        return cls(state="normal", since=now)


def _new_id() -> str:
    return uuid.uuid4().hex


def compare(op: str, observed: float, threshold: float) -> bool:
    """Apply a rule's comparison operator."""
    return _OPS[op](observed, threshold)


def step_threshold(
    spec: AlertRuleSpec,
    state: RuleState,
    value: float | None,
    now: float,
    *,
    new_id: Callable[[], str] = _new_id,
) -> tuple[RuleState, Transition | None]:
    """Advance a threshold rule given the window's aggregate `value` (None = no data, condition false)."""
    if spec.op is None or spec.value is None:
        raise ValueError(f"rule {spec.name!r} is not a threshold rule")
    breached = value is not None and compare(spec.op, value, spec.value)
    if state.state == "firing":
        if breached:
            return replace(state, value=value), None
        return replace(state, state="normal", since=now, value=value), "resolved"
    if not breached:
        if state.state == "pending":
            return replace(state, state="normal", since=now, value=value), None
        return replace(state, value=value), None
    held_long_enough = spec.for_s <= 0 or (state.state == "pending" and now - state.since >= spec.for_s)
    if held_long_enough:
        fired = RuleState(state="firing", since=now, value=value, episode_id=new_id(), fired_at=now)
        return fired, "firing"
    if state.state == "pending":
        return replace(state, value=value), None
    return replace(state, state="pending", since=now, value=value), None


def anomaly_time(anomaly: Mapping[str, Any], default: float) -> float:
    """An anomaly's `detected_at` (number, ISO-8601 string or datetime) as Unix seconds, else `default`."""
    at = anomaly.get("detected_at")
    if isinstance(at, bool) or at is None:
        return default
    if isinstance(at, int | float):
        return float(at)
    if isinstance(at, datetime):
        return at.timestamp()
    if isinstance(at, str):
        try:
            return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return default
    return default


def matches(spec: AlertRuleSpec, anomaly: Mapping[str, Any]) -> bool:
    """Whether an anomaly counts for an anomaly rule (function, kind filter, minimum score)."""
    fn = anomaly.get("function")
    if fn is not None and fn != spec.function:
        return False
    if spec.anomaly_kinds is not None and anomaly.get("kind") not in spec.anomaly_kinds:
        return False
    if spec.min_score is not None:
        score = anomaly.get("score")
        if not isinstance(score, int | float) or score < spec.min_score:
            return False
    return True


def step_anomaly(
    spec: AlertRuleSpec,
    state: RuleState,
    anomalies_in_window: Sequence[Mapping[str, Any]],
    now: float,
    quiet_s: float = 300,
    *,
    new_id: Callable[[], str] = _new_id,
) -> tuple[RuleState, Transition | None]:
    """Fire on the first matching anomaly newer than the last episode; resolve after `quiet_s` without one.

    Anomalies detected at or before the time the rule last became normal are ignored, so the same anomaly
    passed again in a later window never starts a second episode.
    """
    if spec.kind != "anomaly":
        raise ValueError(f"rule {spec.name!r} is not an anomaly rule")
    horizon = state.last_match_at if state.state == "firing" else state.since
    fresh = [(anomaly_time(a, now), a) for a in anomalies_in_window if matches(spec, a)]
    fresh = [(t, a) for t, a in fresh if horizon is None or t > horizon]
    if fresh:
        t_last, latest = max(fresh, key=lambda p: p[0])
        score = latest.get("score")
        value = float(score) if isinstance(score, int | float) else None
        if state.state == "firing":
            return replace(state, value=value, last_match_at=t_last), None
        first = min(t for t, _ in fresh)
        fired = RuleState(
            state="firing", since=now, value=value, episode_id=new_id(), fired_at=first, last_match_at=t_last
        )
        return fired, "firing"
    if state.state == "firing":
        last = state.last_match_at if state.last_match_at is not None else state.since
        if now - last >= quiet_s:
            return replace(state, state="normal", since=now), "resolved"
    return state, None


def repeat_due(spec: AlertRuleSpec, state: RuleState, last_notified_at: float | None, now: float) -> bool:
    """Whether a still-firing rule with `repeat_interval_s` should be notified again (Alertmanager-like)."""
    if state.state != "firing" or spec.repeat_interval_s is None:
        return False
    last = last_notified_at if last_notified_at is not None else state.since
    return now - last >= spec.repeat_interval_s
