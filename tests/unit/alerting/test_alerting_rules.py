"""Alert rule validation: CONTRACT.md's shape accepted, bad input rejected with a message naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from analytics.alerting.rules import AlertRuleSpec, EmailChannel, WebhookChannel, parse_rule
from core.errors import InvalidInput

HOOK = {"type": "webhook", "url": "http://127.0.0.1:18091/hook", "secret": "whsec_c2VjcmV0LWZvci1jaGVja3M="}


def threshold(**over: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": "slow-p95",
        "function": "resize-image",
        "kind": "threshold",
        "channels": [HOOK],
        "metric": "duration_ms",
        "aggregate": "p95",
        "op": ">",
        "value": 500,
        "window_s": 300,
        "for_s": 60,
    }
    rule.update(over)
    return {k: v for k, v in rule.items() if v is not ...}


def anomaly(**over: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "odd", "function": "resize-image", "kind": "anomaly", "channels": [HOOK]}
    rule.update(over)
    return {k: v for k, v in rule.items() if v is not ...}


def rejected(data: object) -> str:
    with pytest.raises(InvalidInput) as exc:
        parse_rule(data)
    return exc.value.message


def test_contract_threshold_rule_parses_with_every_channel_kind() -> None:
    spec = parse_rule(
        threshold(
            channels=[
                HOOK,
                {"type": "slack", "webhook_url": "https://hooks.slack.com/services/T0/B0/xyz"},
                {"type": "email", "to": "oncall@example.com"},
                {"type": "email", "to": ["a@example.com", "b@example.org"]},
                {"type": "sms", "to": "+4915112345678"},
            ]
        )
    )
    assert spec.kind == "threshold" and spec.metric == "duration_ms" and spec.value == 500.0
    assert [c.type for c in spec.channels] == ["webhook", "slack", "email", "email", "sms"]
    assert isinstance(spec.channels[0], WebhookChannel)
    assert isinstance(spec.channels[3], EmailChannel) and spec.channels[3].recipients == [
        "a@example.com",
        "b@example.org",
    ]


def test_contract_anomaly_rule_from_the_checks_parses() -> None:
    spec = parse_rule(anomaly(name="chkmon-anomaly", function="chkmon"))
    assert spec.kind == "anomaly" and spec.min_score is None and spec.anomaly_kinds is None and spec.for_s == 0
    spec = parse_rule(anomaly(min_score=0.8, anomaly_kinds=["duration"]))
    assert spec.min_score == 0.8 and spec.anomaly_kinds == ["duration"]


def test_round_trip_through_json_is_lossless() -> None:
    spec = parse_rule(threshold(labels={"severity": "page"}, repeat_interval_s=3600))
    assert parse_rule(spec.model_dump(mode="json", exclude_none=True)) == spec
    assert AlertRuleSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (threshold(metric="latency"), ["metric", "'latency'", "duration_ms"]),
        (threshold(aggregate="median"), ["aggregate", "p95"]),
        (threshold(op="=>"), ["op", "'=>'", "'>='"]),
        (threshold(op="=="), ["op"]),
        (threshold(window_s=0), ["window_s", "greater than 0"]),
        (threshold(window_s=-5), ["window_s"]),
        (threshold(for_s=-1), ["for_s"]),
        (threshold(value="lots"), ["value"]),
        (threshold(value=float("nan")), ["value", "finite"]),
        (threshold(window_s=...), ["window_s", "missing"]),
        (threshold(metric=..., op=...), ["missing: metric, op"]),
        (threshold(min_score=0.5), ["min_score", "anomaly"]),
        (anomaly(metric="cpu_ms"), ["metric", "threshold"]),
        (anomaly(for_s=30), ["for_s", "threshold"]),
        (anomaly(min_score=1.5), ["min_score", "less than or equal to 1"]),
        (anomaly(anomaly_kinds=[]), ["anomaly_kinds"]),
        (anomaly(kind="sometimes"), ["kind", "'sometimes'"]),
        (anomaly(name=...), ["name", "field required"]),
        (anomaly(function=...), ["function", "field required"]),
        (anomaly(name=""), ["name"]),
        (anomaly(function="Bad Name!"), ["function", "function name"]),
        (anomaly(labels={"tenant": "other"}), ["labels", "set by the platform"]),
        (anomaly(bogus=1), ["bogus", "unknown field"]),
        (anomaly(id="r-1"), ["id", "unknown field"]),
        (anomaly(channels=[{"type": "slack", "webhook_url": "not a url"}]), ["channels[0].webhook_url", "URL"]),
        (anomaly(channels=[{"type": "slack", "webhook_url": "ftp://x.example/a"}]), ["webhook_url", "http"]),
        (anomaly(channels=[{"type": "slack", "webhook_url": "http://"}]), ["webhook_url"]),
        (anomaly(channels=[HOOK, {"type": "webhook", "url": "/relative", "secret": "s"}]), ["channels[1].url"]),
        (anomaly(channels=[{"type": "webhook", "url": "http://x.example"}]), ["channels[0].secret", "required"]),
        (anomaly(channels=[{"type": "webhook", "url": "http://x.example", "secret": ""}]), ["secret"]),
        (anomaly(channels=[{"type": "webhook", "url": "http://x.example", "secret": "whsec_%%"}]), ["base64"]),
        (anomaly(channels=[{"type": "pager", "to": "x"}]), ["channels[0].type", "'pager'", "slack"]),
        (anomaly(channels=[{"url": "http://x.example"}]), ["channels[0].type", "field required"]),
        (anomaly(channels=[{**HOOK, "extra": 1}]), ["channels[0].extra", "unknown field"]),
        (anomaly(channels=[{"type": "email", "to": "not-an-address"}]), ["channels[0].to", "e-mail"]),
        (anomaly(channels=[{"type": "email", "to": []}]), ["channels[0].to", "at least one"]),
        (anomaly(channels=[{"type": "sms", "to": "0151 123"}]), ["channels[0].to", "E.164"]),
        (anomaly(labels={"alertname": "x"}), ["labels", "alertname"]),
    ],
)
def test_bad_rules_get_invalid_input_naming_the_field(data: dict[str, Any], expect: list[str]) -> None:
    message = rejected(data)
    assert message.startswith("invalid alert rule: ")
    for part in expect:
        assert part in message, (part, message)


def test_not_an_object_is_rejected() -> None:
    assert "JSON object" in rejected([1, 2])
    assert "JSON object" in rejected("rule")


def test_detail_lists_every_error_with_its_field() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_rule(threshold(metric="latency", op="=>", bogus=True))
    errors = exc.value.detail["errors"]
    assert isinstance(errors, list)
    assert {e["field"] for e in errors} == {"metric", "op", "bogus"}


def test_a_rule_without_channels_is_left_to_the_routing_tree() -> None:
    spec = parse_rule({k: v for k, v in anomaly().items() if k != "channels"})
    assert spec.channels == []


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "https://[fe80::1]/hook",
                                 "http://169.254.0.1:8080/x"])
def test_a_link_local_address_is_refused_as_a_webhook(url: str) -> None:
    from analytics.alerting.rules import check_http_url

    with pytest.raises(ValueError, match="link-local"):
        check_http_url(url)
    assert check_http_url("http://127.0.0.1:9/hook") == "http://127.0.0.1:9/hook"
