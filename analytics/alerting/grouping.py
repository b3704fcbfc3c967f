"""Alertmanager's aggregation groups as pure logic (the caller passes `now`): group_wait, group_interval,
repeat_interval, and muting (silences, inhibition) decided by a predicate at flush time.

A group is one receiver x one route node x the values of its `group_by` labels (and always the tenant).
A flush sends the group's firing alerts, plus resolved ones whose firing was told, when:
- it is the group's first flush, `group_wait` after the group was created, and something fires;
- something changed since the last notice (a new firing alert, or one resolved) and `group_interval` passed;
- nothing changed, something still fires and `repeat_interval` passed since the last notice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from analytics.alerting.config import RouteMatch

Status = Literal["firing", "resolved"]
Muted = Callable[[Mapping[str, str]], bool]


@dataclass
class AlertInstance:
    """One alert as the groups see it: identified by its label fingerprint."""

    fingerprint: str
    labels: dict[str, str]
    status: Status
    starts_at: float
    ends_at: float | None = None
    value: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    generator_url: str = ""
    alert_id: int | None = None
    rule_id: int | None = None
    repeat_interval_s: float | None = None  # the rule's own override of the route's repeat_interval


@dataclass
class Group:
    """An aggregation group and what its last notice said."""

    key: str
    receiver: str
    route: RouteMatch
    labels: dict[str, str]
    created_at: float
    alerts: dict[str, AlertInstance] = field(default_factory=dict)
    notified: dict[str, Status] = field(default_factory=dict)
    last_notify_at: float | None = None
    flushed: bool = False

    @property
    def repeat_interval_s(self) -> float:
        """The route's repeat_interval, or the shortest rule override among the group's alerts."""
        own = [a.repeat_interval_s for a in self.alerts.values() if a.repeat_interval_s is not None]
        return min([self.route.repeat_interval_s, *own]) if own else self.route.repeat_interval_s


@dataclass
class GroupNotice:
    """What one flush sends to one receiver: every alert the notice lists, firing first."""

    group_key: str
    receiver: str
    group_labels: dict[str, str]
    alerts: list[AlertInstance]
    reason: Literal["first", "changed", "repeat"]

    @property
    def status(self) -> Status:
        """`firing` while any listed alert fires (Alertmanager's group status)."""
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"


def group_key(receiver: str, route: RouteMatch, labels: Mapping[str, str]) -> str:
    """A stable id for a group: receiver, route node and group labels."""
    raw = json.dumps([receiver, route.route_id, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


class Aggregator:
    """Every live group, keyed by `group_key`; put alerts in, flush notices out."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}

    def put(self, receiver: str, route: RouteMatch, alert: AlertInstance, now: float) -> Group:
        """Add or update an alert in its group (created on first use); returns the group."""
        labels = route.group_labels(alert.labels)
        key = group_key(receiver, route, labels)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key, receiver, route, labels, created_at=now)
        group.alerts[alert.fingerprint] = alert
        return group

    def seed(self, key: str, notified: Mapping[str, Status], at: float) -> None:
        """Restore what a group's last notice said (after a restart), so it is not sent again."""
        group = self.groups.get(key)
        if group is not None and not group.flushed:
            group.notified, group.last_notify_at, group.flushed = dict(notified), at, True

    def resolve_unless(self, live_rules: set[int], now: float) -> int:
        """Resolve firing alerts whose rule is gone (deleted): their groups tell it once; return how many."""
        n = 0
        for group in self.groups.values():
            for a in group.alerts.values():
                if a.status == "firing" and a.rule_id is not None and a.rule_id not in live_rules:
                    a.status, a.ends_at = "resolved", now
                    n += 1
        return n

    def forget(self, keys: list[str], now: float) -> None:
        """Undo the last flush of these groups (their notices could not be stored): they flush again at once."""
        for key in keys:
            group = self.groups.get(key)
            if group is not None:
                group.notified, group.last_notify_at, group.flushed = {}, None, False
                group.created_at = now - group.route.group_wait_s

    def flush(self, now: float, muted: Muted = lambda _labels: False) -> list[GroupNotice]:
        """The notices due at `now`; groups left with nothing to tell are dropped."""
        out: list[GroupNotice] = []
        for key in list(self.groups):
            group = self.groups[key]
            if not group.flushed and now - group.created_at < group.route.group_wait_s:
                continue
            notice = self._flush_group(group, now, muted)
            if notice is not None:
                out.append(notice)
            if not group.alerts:
                del self.groups[key]
        return out

    def _flush_group(self, group: Group, now: float, muted: Muted) -> GroupNotice | None:
        gap = min(group.route.group_interval_s, group.repeat_interval_s)
        if group.last_notify_at is not None and now - group.last_notify_at < gap:
            return None  # too soon for any notice: skip the muting checks
        firing = {fp for fp, a in group.alerts.items() if a.status == "firing" and not muted(a.labels)}
        told_firing = {fp for fp, s in group.notified.items() if s == "firing"}
        resolved = {fp for fp, a in group.alerts.items() if a.status == "resolved" and fp in told_firing}
        for fp in [fp for fp, a in group.alerts.items() if a.status == "resolved" and fp not in told_firing]:
            del group.alerts[fp]  # resolved before anyone was told it fired: nothing to say
        reason: Literal["first", "changed", "repeat"] | None = None
        if not group.flushed:
            reason = "first" if firing else None
        elif (firing - told_firing or resolved) and (
                group.last_notify_at is None or now - group.last_notify_at >= group.route.group_interval_s):
            reason = "changed"
        elif firing and group.last_notify_at is not None and now - group.last_notify_at >= group.repeat_interval_s:
            reason = "repeat"
        group.flushed = True
        if reason is None:
            return None
        listed = [group.alerts[fp] for fp in sorted(firing)] + [group.alerts[fp] for fp in sorted(resolved)]
        group.notified = {a.fingerprint: a.status for a in listed}
        group.last_notify_at = now
        for fp in resolved:
            del group.alerts[fp]
        return GroupNotice(group.key, group.receiver, dict(group.labels), listed, reason)
