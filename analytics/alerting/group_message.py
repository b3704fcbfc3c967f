"""A grouped notice as each channel says it: the Alertmanager v4 body (stored in the outbox), Slack blocks with
a stable metadata key, an e-mail subject and body, an SMS line. `id` is the outbox row's de-duplication id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from analytics.alerting.grouping import AlertInstance, GroupNotice
from analytics.alerting.payloads import (
    ZERO_TIME,
    _mrkdwn_escape,
    _quote,
    alert_annotations,
    fingerprint,
    plain_text,
    rfc3339,
    slack_message,
)

SLACK_EVENT_TYPE = "cloudfn_alert_notification"
MAX_LISTED = 20


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def alertmanager_group_payload(notice: GroupNotice, receiver: str, external_url: str) -> dict[str, Any]:
    """The Prometheus Alertmanager webhook body (version 4) listing every alert of the notice."""
    alerts = [_alert_json(a) for a in notice.alerts]
    group_key = "{}:{" + ", ".join(f"{k}={_quote(v)}" for k, v in sorted(notice.group_labels.items())) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": notice.status,
        "receiver": receiver,
        "groupLabels": dict(notice.group_labels),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
    }


def _alert_json(a: AlertInstance) -> dict[str, Any]:
    ann = alert_annotations(a.labels.get("alertname", ""), a.labels.get("function", ""), a.status, a.value,
                            a.annotations)
    return {
        "status": a.status,
        "labels": dict(a.labels),
        "annotations": ann,
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at) if a.status == "resolved" else ZERO_TIME,
        "generatorURL": a.generator_url,
        "fingerprint": fingerprint(a.labels),
        "value": a.value,
    }


@dataclass
class GroupMessage:
    """One outbox notice, rendered per channel."""

    id: str
    payload: dict[str, Any]

    @property
    def status(self) -> str:
        """firing | resolved."""
        return str(self.payload["status"])

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The listed alerts (Alertmanager's JSON shape)."""
        return list(self.payload["alerts"])

    def alertmanager(self) -> dict[str, Any]:
        """The webhook body, without the platform's extra `value` field on each alert."""
        body = dict(self.payload)
        body["alerts"] = [{k: v for k, v in a.items() if k != "value"} for a in self.alerts]
        return body

    def _name(self) -> str:
        return str(self.payload.get("groupLabels", {}).get("alertname")
                   or self.alerts[0]["labels"].get("alertname", "alert"))

    def subject(self) -> str:
        """One alert: `[FIRING] rule on function (value v)`; several: `[FIRING:5] rule (fn1, fn2, …)`."""
        return self._headline()

    def _headline(self) -> str:
        fns = sorted({a["labels"].get("function", "") for a in self.alerts})
        listed = ", ".join(fns[:5]) + (f", … ({len(fns)} functions)" if len(fns) > 5 else "")
        if len(self.alerts) == 1:
            a = self.alerts[0]
            value = "n/a" if a.get("value") is None else f"{a['value']:.6g}"
            return f"[{a['status'].upper()}] {self._name()} on {listed} (value {value})"
        return f"[{self.status.upper()}:{len(self.alerts)}] {self._name()} ({listed})"

    def text(self) -> str:
        """The e-mail body: the headline, then each alert's lines."""
        parts = [self._headline(), ""]
        for a in self.alerts[:MAX_LISTED]:
            parts.append(plain_text(
                rule_name=a["labels"].get("alertname", ""), function=a["labels"].get("function", ""),
                status=a["status"], value=a.get("value"), started_at=_parse(a["startsAt"]),
                ended_at=_parse(a["endsAt"]) if a["status"] == "resolved" else None,
                annotations=a["annotations"], generator_url=a.get("generatorURL", "")))
            parts.append("Labels:   " + ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items())))
            parts.append("")
        if len(self.alerts) > MAX_LISTED:
            parts.append(f"… and {len(self.alerts) - MAX_LISTED} more")
        return "\n".join(parts) + "\n"

    def slack(self) -> dict[str, Any]:
        """Block Kit: one alert as before, several as a list; `metadata` carries the stable de-dup key."""
        if len(self.alerts) == 1:
            a = self.alerts[0]
            msg = slack_message(
                rule_name=a["labels"].get("alertname", ""), function=a["labels"].get("function", ""),
                status=a["status"], value=a.get("value"), started_at=_parse(a["startsAt"]),
                ended_at=_parse(a["endsAt"]) if a["status"] == "resolved" else None, labels=a["labels"],
                annotations=a["annotations"], external_url=str(self.payload.get("externalURL", "")),
                generator_url=a.get("generatorURL", ""), receiver=str(self.payload.get("receiver", "")))
        else:
            lines = [f"{':rotating_light:' if a['status'] == 'firing' else ':white_check_mark:'} "
                     f"`{_mrkdwn_escape(a['labels'].get('function', ''))}` "
                     f"{_mrkdwn_escape(str(a['annotations'].get('summary', '')))}" for a in self.alerts[:MAX_LISTED]]
            msg = {"text": _mrkdwn_escape(self._headline()), "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": self._headline()[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
            ]}
        msg["metadata"] = {"event_type": SLACK_EVENT_TYPE,
                           "event_payload": {"notification_id": self.id, "status": self.status,
                                             "group_key": str(self.payload.get("groupKey", ""))}}
        return msg


def _parse(at: str) -> float | None:
    if not at or at == ZERO_TIME:
        return None
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
