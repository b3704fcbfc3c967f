"""An alert's labels (CONTRACT: alertname, function, version, kind, metric, severity, tenant, plus the rule's own)
and the receiver name of a rule's own channels."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from analytics.alerting.rules import AlertRuleSpec

DEFAULT_SEVERITY = "warning"


def alert_labels(spec: AlertRuleSpec, tenant: str, *, version: int | None, metric: str | None) -> dict[str, str]:
    """Platform labels, then the rule's own (which may set severity or add any), then the ones nobody overrides."""
    base = {"version": "" if version is None else str(version), "kind": spec.kind,
            "metric": metric or spec.metric or "", "severity": DEFAULT_SEVERITY}
    fixed = {"alertname": spec.name, "function": spec.function, "tenant": tenant}
    return {**base, **spec.labels, **fixed}


def direct_receiver(tenant: str, channels: Sequence[Mapping[str, Any]]) -> str:
    """The receiver name of a rule's own channels: rules of one tenant with the same channels share it."""
    raw = json.dumps([tenant, list(channels)], sort_keys=True, separators=(",", ":"))
    return "rule-channels-" + hashlib.sha256(raw.encode()).hexdigest()[:12]


def channel_label(channel: dict[str, Any]) -> str:
    """How a delivery names its channel: `type:target` (a Slack URL's secret path elided)."""
    t = channel.get("type")
    target = channel.get("url") or channel.get("webhook_url") or channel.get("to") or ""
    if t == "slack":
        target = str(target).split("/services/")[0] + "/services/…"
    return f"{t}:{target}"[:300]
