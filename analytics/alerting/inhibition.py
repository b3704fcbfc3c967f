"""Inhibition as pure logic: a firing source alert mutes matching targets that share the `equal` labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from analytics.alerting.config import InhibitRule


def inhibited(labels: Mapping[str, str], firing: Iterable[Mapping[str, str]], rules: Sequence[InhibitRule]) -> bool:
    """Whether an alert with `labels` is muted by some rule while the alerts in `firing` fire.

    A source only ever mutes alerts of its own tenant, and never itself.
    """
    active = [r for r in rules if all(m.matches(labels) for m in r.target_matchers)]
    if not active:
        return False
    sources = list(firing)
    for rule in active:
        for src in sources:
            if src == labels or src.get("tenant") != labels.get("tenant"):
                continue
            if all(m.matches(src) for m in rule.source_matchers) and all(
                    src.get(k, "") == labels.get(k, "") for k in rule.equal):
                return True
    return False
