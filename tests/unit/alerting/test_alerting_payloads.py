"""Alertmanager v4 payload, Slack Block Kit message and Standard Webhooks signing, against published vectors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from slack_sdk.models.blocks import Block

from analytics.alerting.payloads import alertmanager_payload, fingerprint, slack_message
from analytics.alerting.signing import sign, verify

COMMON = {
    "rule_name": "slow-p95",
    "function": "resize",
    "value": 523.456789,
    "started_at": 1_700_000_000.0,
    "labels": {"severity": "page"},
    "annotations": {"description": "p95 duration above 500 ms"},
    "external_url": "http://cloudfn.local:8000",
    "generator_url": "http://cloudfn.local:8000/v1/alert-rules/r1",
    "receiver": "slow-p95/webhook",
}


def test_alertmanager_v4_firing_has_every_contract_field() -> None:
    p = alertmanager_payload(status="firing", ended_at=None, **COMMON)  # type: ignore[arg-type]
    assert p["version"] == "4" and p["status"] == "firing" and p["receiver"] == "slow-p95/webhook"
    assert p["groupKey"] == '{}:{alertname="slow-p95", function="resize"}'
    assert p["groupLabels"] == {"alertname": "slow-p95", "function": "resize"}
    assert p["commonLabels"] == {"alertname": "slow-p95", "function": "resize", "severity": "page"}
    assert p["commonAnnotations"]["description"] == "p95 duration above 500 ms"  # type: ignore[index]
    assert p["externalURL"] == "http://cloudfn.local:8000"
    (alert,) = p["alerts"]  # type: ignore[misc]
    assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert alert["status"] == "firing" and alert["labels"]["alertname"] == "slow-p95"
    assert alert["labels"]["function"] == "resize"
    assert alert["startsAt"] == "2023-11-14T22:13:20.000Z" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["annotations"]["value"] == "523.457"
    assert alert["generatorURL"] == COMMON["generator_url"]
    assert alert["fingerprint"] == fingerprint(alert["labels"]) and len(alert["fingerprint"]) == 16


def test_alertmanager_resolved_carries_end_time_and_same_fingerprint() -> None:
    firing = alertmanager_payload(status="firing", ended_at=None, **COMMON)  # type: ignore[arg-type]
    ended = datetime(2023, 11, 14, 22, 20, 0, 250000, tzinfo=UTC)
    resolved = alertmanager_payload(status="resolved", ended_at=ended, **COMMON)  # type: ignore[arg-type]
    assert resolved["status"] == "resolved"
    alert = resolved["alerts"][0]  # type: ignore[index]
    assert alert["status"] == "resolved" and alert["endsAt"] == "2023-11-14T22:20:00.250Z"
    assert alert["fingerprint"] == firing["alerts"][0]["fingerprint"]  # type: ignore[index]
    assert resolved["groupKey"] == firing["groupKey"]


def test_platform_labels_win_over_caller_labels() -> None:
    p = alertmanager_payload(
        **{**COMMON, "labels": {"alertname": "spoof", "function": "spoof"}},  # type: ignore[arg-type]
        status="firing",
        ended_at=None,
    )
    assert p["commonLabels"] == {"alertname": "slow-p95", "function": "resize"}


def test_fingerprint_matches_prometheus() -> None:
    # prometheus/common model: labelSetToFingerprint test vectors
    assert int(fingerprint({}), 16) == 14695981039346656037
    assert int(fingerprint({"name": "garland, briggs", "fear": "love is not enough"}), 16) == 5799056148416392346


@pytest.mark.parametrize("status", ["firing", "resolved"])
def test_slack_message_is_valid_block_kit_with_a_text_fallback(status: str) -> None:
    m = slack_message(status=status, ended_at=1_700_000_600.0, **COMMON)  # type: ignore[arg-type]
    assert m["text"] == f"[{status.upper()}] slow-p95 on resize (value 523.457)"
    blocks = m["blocks"]
    assert isinstance(blocks, list)
    assert [b["type"] for b in blocks] == ["header", "section", "context"]
    for b in blocks:  # slack-sdk's own models parse and validate each block (lengths, types)
        parsed = Block.parse(b)
        assert parsed is not None and parsed.to_dict() == b
    assert blocks[0]["text"] == {"type": "plain_text", "text": f"[{status.upper()}] slow-p95"}
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert "*Function*\n`resize`" in fields and "*Value*\n523.457" in fields and "*severity*\npage" in fields
    assert ("*Resolved*\n2023-11-14T22:23:20.000Z" in fields) is (status == "resolved")
    assert blocks[1]["text"]["text"] == "p95 duration above 500 ms"


def test_slack_escapes_mrkdwn_control_characters_and_clips_the_header() -> None:
    m = slack_message(
        **{**COMMON, "rule_name": "a<b>&c" * 40, "annotations": {}},  # type: ignore[arg-type]
        status="firing",
        ended_at=None,
    )
    assert "<" not in m["text"] and "&lt;b&gt;&amp;c" in m["text"]  # type: ignore[operator]
    header = m["blocks"][0]["text"]["text"]  # type: ignore[index]
    assert len(header) <= 150
    Block.parse(m["blocks"][0]).to_dict()  # type: ignore[index, union-attr]


def test_sign_reproduces_the_standard_webhooks_test_vector() -> None:
    sig = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_plain_secrets_are_used_as_utf8_bytes() -> None:
    import base64
    import hashlib
    import hmac

    want = base64.b64encode(hmac.new("sécret".encode(), b"m1.5.{}", hashlib.sha256).digest()).decode()
    assert sign("sécret", "m1", 5, b"{}") == "v1," + want


def test_verify_accepts_valid_and_rejects_tampering_old_timestamps_and_missing_headers() -> None:
    secret, body, now = "whsec_c2VjcmV0LWZvci1jaGVja3M=", b'{"a":1}', 1_700_000_000
    good = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(now), "Webhook-Signature": sign(secret, "msg_1", now, body)}
    assert verify(secret, good, body, now=now + 10)
    assert verify(secret, {**good, "Webhook-Signature": "v1,AAAA " + good["Webhook-Signature"]}, body, now=now)
    assert not verify(secret, good, body + b" ", now=now)
    assert not verify("whsec_b3RoZXI=", good, body, now=now)
    assert not verify(secret, good, body, now=now + 301)
    assert not verify(secret, {**good, "Webhook-Timestamp": "soon"}, body, now=now)
    assert not verify(
        secret, {**good, "Webhook-Signature": good["Webhook-Signature"].replace("v1", "v2")}, body, now=now
    )
    assert not verify(secret, {k: v for k, v in good.items() if k != "Webhook-Id"}, body, now=now)
