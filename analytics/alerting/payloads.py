"""What a notice says per channel: Alertmanager v4 webhook payload, Slack Block Kit message, plain text."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

Status = Literal["firing", "resolved"]
Instant = float | int | datetime | None

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt for an alert that is still firing
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK64 = (1 << 64) - 1


def rfc3339(at: Instant) -> str:
    """Unix seconds or a datetime as RFC 3339 UTC with milliseconds; None as Alertmanager's zero time."""
    if at is None:
        return ZERO_TIME
    dt = at if isinstance(at, datetime) else datetime.fromtimestamp(float(at), tz=UTC)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fingerprint(labels: Mapping[str, str]) -> str:
    """Prometheus' label-set fingerprint: FNV-1a 64 over sorted name/value pairs, 0xff-separated, as hex."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for chunk in (name.encode(), b"\xff", str(labels[name]).encode(), b"\xff"):
            for byte in chunk:
                h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return f"{h:016x}"


def format_value(value: float | None) -> str:
    """A metric value for people: up to 6 significant digits, or `n/a`."""
    return "n/a" if value is None else f"{value:.6g}"


def alert_labels(rule_name: str, function: str, labels: Mapping[str, str] | None) -> dict[str, str]:
    """The alert's labels: the caller's plus `alertname` and `function`, which always win."""
    return {**{k: str(v) for k, v in (labels or {}).items()}, "alertname": rule_name, "function": function}


def summary(rule_name: str, function: str, status: Status, value: float | None) -> str:
    """One line: `[FIRING] rule on function (value 523.4)`."""
    return f"[{status.upper()}] {rule_name} on {function} (value {format_value(value)})"


def alert_annotations(
    rule_name: str, function: str, status: Status, value: float | None, annotations: Mapping[str, str] | None
) -> dict[str, str]:
    """The caller's annotations with a default `summary` and the observed `value`."""
    base = {"summary": summary(rule_name, function, status, value), "value": format_value(value)}
    return {**base, **{k: str(v) for k, v in (annotations or {}).items()}}


def alertmanager_payload(
    *,
    rule_name: str,
    function: str,
    status: Status,
    value: float | None,
    started_at: Instant,
    ended_at: Instant,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    external_url: str = "",
    generator_url: str = "",
    receiver: str = "cloudfn",
) -> dict[str, object]:
    """The Prometheus Alertmanager webhook body, version "4", with one alert."""
    lab = alert_labels(rule_name, function, labels)
    ann = alert_annotations(rule_name, function, status, value, annotations)
    group = {"alertname": rule_name, "function": function}
    group_key = "{}:{" + ", ".join(f"{k}={_quote(v)}" for k, v in sorted(group.items())) + "}"
    alert = {
        "status": status,
        "labels": lab,
        "annotations": ann,
        "startsAt": rfc3339(started_at),
        "endsAt": rfc3339(ended_at) if status == "resolved" else ZERO_TIME,
        "generatorURL": generator_url,
        "fingerprint": fingerprint(lab),
    }
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": dict(lab),
        "commonAnnotations": dict(ann),
        "externalURL": external_url,
        "alerts": [alert],
    }


def _quote(v: str) -> str:
    """A label value quoted as Prometheus prints it."""
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _mrkdwn_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_message(
    *,
    rule_name: str,
    function: str,
    status: Status,
    value: float | None,
    started_at: Instant,
    ended_at: Instant,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    external_url: str = "",
    generator_url: str = "",
    receiver: str = "cloudfn",
) -> dict[str, object]:
    """A Slack incoming-webhook message: a text fallback plus Block Kit header, fields section and context."""
    ann = alert_annotations(rule_name, function, status, value, annotations)
    icon = ":rotating_light:" if status == "firing" else ":white_check_mark:"
    fields = [
        ("Function", f"`{_mrkdwn_escape(function)}`"),
        ("Status", status.upper()),
        ("Value", format_value(value)),
        ("Started", rfc3339(started_at) if started_at is not None else "n/a"),
    ]
    if status == "resolved":
        fields.append(("Resolved", rfc3339(ended_at) if ended_at is not None else "n/a"))
    extra = {k: v for k, v in alert_labels(rule_name, function, labels).items() if k not in ("alertname", "function")}
    fields += [(k, _mrkdwn_escape(v)) for k, v in sorted(extra.items())][: 10 - len(fields)]
    blocks: list[dict[str, object]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(f"[{status.upper()}] {rule_name}", 150)},
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _clip(_mrkdwn_escape(ann.get("description", ann["summary"])), 3000),
            },
            "fields": [{"type": "mrkdwn", "text": _clip(f"*{k}*\n{v}", 2000)} for k, v in fields],
        },
    ]
    context = [f"{icon} receiver `{_mrkdwn_escape(receiver)}`"]
    if generator_url:
        context.append(f"<{generator_url}|rule>")
    if external_url:
        context.append(f"<{external_url}|CloudFunctions>")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    return {"text": _mrkdwn_escape(summary(rule_name, function, status, value)), "blocks": blocks}


def plain_text(
    *,
    rule_name: str,
    function: str,
    status: Status,
    value: float | None,
    started_at: Instant,
    ended_at: Instant,
    annotations: Mapping[str, str] | None = None,
    generator_url: str = "",
) -> str:
    """The e-mail body: rule, function, status, value and times, one per line."""
    lines = [
        summary(rule_name, function, status, value),
        "",
        f"Rule:     {rule_name}",
        f"Function: {function}",
        f"Status:   {status}",
        f"Value:    {format_value(value)}",
        f"Started:  {rfc3339(started_at) if started_at is not None else 'n/a'}",
    ]
    if status == "resolved":
        lines.append(f"Resolved: {rfc3339(ended_at) if ended_at is not None else 'n/a'}")
    for k, v in sorted((annotations or {}).items()):
        lines.append(f"{k}: {v}")
    if generator_url:
        lines.append(f"Rule URL: {generator_url}")
    return "\n".join(lines) + "\n"
