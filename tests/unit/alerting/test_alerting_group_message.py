"""A grouped notice rendered per channel: Alertmanager v4 body, subject, e-mail text, Slack blocks + metadata."""

from __future__ import annotations

import json
import time

from standardwebhooks.webhooks import Webhook

from analytics.alerting.config import RouteMatch
from analytics.alerting.group_message import GroupMessage, alertmanager_group_payload
from analytics.alerting.grouping import Aggregator, AlertInstance
from analytics.alerting.payloads import fingerprint
from analytics.alerting.signing import signature_headers

ROUTE = RouteMatch("route", "team", ("alertname",), 0.0, 10.0, 3600.0)


def grouped(n: int) -> GroupMessage:
    agg = Aggregator()
    for i in range(n):
        labels = {"alertname": "slow", "function": f"fn-{i}", "tenant": "acme", "severity": "warning"}
        agg.put("team", ROUTE, AlertInstance(fingerprint(labels), labels, "firing", 1_700_000_000.0 + i,
                                             value=500.0 + i, annotations={"summary": f"fn-{i} is slow"}), 0)
    (notice,) = agg.flush(1)
    return GroupMessage("cfn-abc", alertmanager_group_payload(notice, "team", "http://cloudfn.test"))


def test_the_webhook_body_is_alertmanager_v4_with_every_alert_and_common_labels() -> None:
    body = grouped(3).alertmanager()
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "team"
    assert body["groupLabels"] == {"alertname": "slow", "tenant": "acme"}
    assert body["commonLabels"] == {"alertname": "slow", "tenant": "acme", "severity": "warning"}
    assert sorted(a["labels"]["function"] for a in body["alerts"]) == ["fn-0", "fn-1", "fn-2"]
    assert all("value" not in a and a["endsAt"] == "0001-01-01T00:00:00Z" for a in body["alerts"])
    assert body["groupKey"] == '{}:{alertname="slow", tenant="acme"}'


def test_subject_text_and_slack_for_one_and_for_many() -> None:
    one, many = grouped(1), grouped(6)
    assert one.subject() == "[FIRING] slow on fn-0 (value 500)"
    assert many.subject() == "[FIRING:6] slow (fn-0, fn-1, fn-2, fn-3, fn-4, … (6 functions))"
    text = many.text()
    assert all(f"Function: fn-{i}" in text for i in range(6)) and "severity=warning" in text
    slack = many.slack()
    assert slack["blocks"][0]["type"] == "header" and slack["text"].startswith("[FIRING:6]")
    assert slack["metadata"] == {"event_type": "cloudfn_alert_notification", "event_payload": {
        "notification_id": "cfn-abc", "status": "firing", "group_key": '{}:{alertname="slow", tenant="acme"}'}}
    assert one.slack()["metadata"]["event_payload"]["notification_id"] == "cfn-abc"


def test_a_standard_webhooks_library_verifies_the_signature() -> None:
    secret = "whsec_c2VjcmV0LWtleQ=="
    msg = grouped(2)
    body = json.dumps(msg.alertmanager()).encode()
    headers = signature_headers(secret, msg.id, int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["status"] == "firing"
