"""Notifier against real local servers: signed webhooks, Slack Block Kit, e-mail over SMTP, SMS, and retries."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from analytics.alerting.channel_config import JsonSms, SmtpConfig
from analytics.alerting.delivery import Attempt, Notification, Notifier, delivered
from analytics.alerting.rules import Channel, parse_rule
from core.smtp_url import SmtpServer

PLAIN = "plain-secret"
WHSEC = "whsec_c2VjcmV0LWZvci1jaGVja3M="


def independent_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Verification written the way a receiver would (as in shared/checks/lib/webhook_receiver.py)."""
    msg = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    return any(p.split(",", 1)[1] == want for p in headers["webhook-signature"].split() if "," in p)


def channel(data: dict[str, Any]) -> Channel:
    return parse_rule({"name": "r", "function": "fn", "kind": "anomaly", "channels": [data]}).channels[0]


def notice(status: str = "firing", nid: str = "msg_2bXkq9") -> Notification:
    return Notification(
        id=nid,
        rule_name="slow-p95",
        function="resize",
        status=status,  # type: ignore[arg-type]
        value=612.5,
        started_at=1_700_000_000.0,
        ended_at=1_700_000_900.0 if status == "resolved" else None,
        labels={"severity": "page"},
        external_url="http://cloudfn.local",
        generator_url="http://cloudfn.local/v1/alert-rules/r1",
        receiver="slow-p95/webhook",
    )


class Recorder:
    """Injected sleep and clock: records delays instead of waiting; time advances by the delays."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.now = 1_800_000_000.0

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def clock(self) -> float:
        return self.now


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def notifier(rec: Recorder) -> Any:
    with Notifier(sleep=rec.sleep, clock=rec.clock, rng=random.Random(7), timeout_s=2) as n:
        yield n


@pytest.mark.parametrize("secret", [PLAIN, WHSEC])
def test_webhook_is_a_signed_alertmanager_payload(receiver: Any, notifier: Notifier, secret: str) -> None:
    attempts = notifier.deliver(channel({"type": "webhook", "url": receiver.url(), "secret": secret}), notice())
    assert [(a.attempt, a.status, a.http_status) for a in attempts] == [(1, "delivered", 200)]
    assert attempts[0].channel == "webhook" and attempts[0].error is None
    (req,) = receiver.requests
    assert req.path == "/hook" and req.headers["content-type"] == "application/json"
    assert req.headers["webhook-id"] == "msg_2bXkq9"
    assert req.headers["webhook-timestamp"] == str(int(attempts[0].at))
    assert req.headers["webhook-signature"].startswith("v1,")
    assert independent_verify(secret, req.headers, req.body)
    assert not independent_verify(secret + "x" if secret == PLAIN else "whsec_b3RoZXI=", req.headers, req.body)
    body = req.json()
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "slow-p95/webhook"
    assert {"groupKey", "groupLabels", "commonLabels", "commonAnnotations", "externalURL", "alerts"} <= set(body)
    alert = body["alerts"][0]
    assert alert["labels"] == {"alertname": "slow-p95", "function": "resize", "severity": "page"}
    assert alert["startsAt"] == "2023-11-14T22:13:20.000Z" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["generatorURL"] == "http://cloudfn.local/v1/alert-rules/r1" and len(alert["fingerprint"]) == 16


def test_resolved_notice_has_end_time(receiver: Any, notifier: Notifier) -> None:
    notifier.deliver(channel({"type": "webhook", "url": receiver.url(), "secret": PLAIN}), notice("resolved"))
    alert = receiver.requests[0].json()["alerts"][0]
    assert alert["status"] == "resolved" and alert["endsAt"] == "2023-11-14T22:28:20.000Z"


def test_webhook_retries_after_500_with_the_same_id_and_fresh_valid_signatures(
    receiver: Any, notifier: Notifier, rec: Recorder
) -> None:
    receiver.answer(500, b"boom").answer(503, b"busy")
    seen: list[Attempt] = []
    ch = channel({"type": "webhook", "url": receiver.url(), "secret": WHSEC})
    attempts = notifier.deliver(ch, notice(), on_attempt=seen.append)
    assert [(a.attempt, a.status, a.http_status) for a in attempts] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "delivered", 200),
    ]
    assert seen == attempts and delivered(attempts)
    assert attempts[0].error == "HTTP 500: boom"
    assert len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {"msg_2bXkq9"}
    assert all(independent_verify(WHSEC, r.headers, r.body) for r in receiver.requests)
    assert len({r.body for r in receiver.requests}) == 1
    # exponential backoff with jitter: 0.5 s base, doubled, each in [base/2, base]
    assert len(rec.sleeps) == 2 and 0.25 <= rec.sleeps[0] <= 0.5 and 0.5 <= rec.sleeps[1] <= 1.0


def test_no_retry_on_400(receiver: Any, notifier: Notifier, rec: Recorder) -> None:
    receiver.answer(400, b"bad payload")
    attempts = notifier.deliver(channel({"type": "webhook", "url": receiver.url(), "secret": PLAIN}), notice())
    assert [(a.status, a.http_status, a.error) for a in attempts] == [("failed", 400, "HTTP 400: bad payload")]
    assert len(receiver.requests) == 1 and rec.sleeps == []


def test_retry_after_seconds_is_honoured_on_429(receiver: Any, notifier: Notifier, rec: Recorder) -> None:
    receiver.answer(429, b"slow down", {"Retry-After": "7"})
    attempts = notifier.deliver(channel({"type": "webhook", "url": receiver.url(), "secret": PLAIN}), notice())
    assert [a.status for a in attempts] == ["failed", "delivered"] and attempts[0].http_status == 429
    assert rec.sleeps == [7.0]


def test_retry_after_http_date_is_honoured_and_capped(receiver: Any, rec: Recorder) -> None:
    later = format_datetime(datetime.fromtimestamp(datetime.now(UTC).timestamp() + 3600, UTC), usegmt=True)
    receiver.answer(503, b"", {"Retry-After": later})
    with Notifier(sleep=rec.sleep, clock=rec.clock, retry_after_max_s=45) as n:
        attempts = n.deliver(channel({"type": "webhook", "url": receiver.url(), "secret": PLAIN}), notice())
    assert [a.status for a in attempts] == ["failed", "delivered"] and rec.sleeps == [45]


def test_gives_up_after_max_attempts_with_capped_backoff(receiver: Any, rec: Recorder) -> None:
    receiver.answer(502, b"", times=10)
    with Notifier(sleep=rec.sleep, clock=rec.clock, max_attempts=6, backoff_s=1, backoff_max_s=4) as n:
        attempts = n.deliver(channel({"type": "webhook", "url": receiver.url(), "secret": PLAIN}), notice())
    assert [a.attempt for a in attempts] == [1, 2, 3, 4, 5, 6] and {a.status for a in attempts} == {"failed"}
    assert not delivered(attempts)
    assert len(receiver.requests) == 6 and len(rec.sleeps) == 5
    for delay, base in zip(rec.sleeps, [1, 2, 4, 4, 4], strict=True):
        assert base / 2 <= delay <= base


def test_connection_refused_is_retried_and_recorded(dead_url: str, rec: Recorder) -> None:
    with Notifier(sleep=rec.sleep, clock=rec.clock, max_attempts=3) as n:
        attempts = n.deliver(channel({"type": "webhook", "url": dead_url, "secret": PLAIN}), notice(), label="hook#2")
    assert [(a.channel, a.attempt, a.status, a.http_status) for a in attempts] == [
        ("hook#2", 1, "failed", None),
        ("hook#2", 2, "failed", None),
        ("hook#2", 3, "failed", None),
    ]
    assert all(a.error and "ConnectError" in a.error for a in attempts)


def test_a_timeout_is_retried(receiver: Any, rec: Recorder) -> None:
    receiver.answer(200, b"ok", delay_s=1.5)
    with Notifier(sleep=rec.sleep, clock=rec.clock, timeout_s=0.3) as n:
        attempts = n.deliver(channel({"type": "webhook", "url": receiver.url(), "secret": PLAIN}), notice())
    assert [a.status for a in attempts] == ["failed", "delivered"]
    assert attempts[0].error is not None and "Timeout" in attempts[0].error


def test_slack_gets_block_kit_with_a_text_fallback(receiver: Any, notifier: Notifier) -> None:
    url = receiver.url("/services/T000/B000/XXXX")
    attempts = notifier.deliver(channel({"type": "slack", "webhook_url": url}), notice())
    assert [(a.channel, a.status, a.http_status) for a in attempts] == [("slack", "delivered", 200)]
    (req,) = receiver.requests
    assert req.path == "/services/T000/B000/XXXX" and req.headers["content-type"].startswith("application/json")
    msg = req.json()
    assert msg["text"] == "[FIRING] slow-p95 on resize (value 612.5)"
    blocks = msg["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "context"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "[FIRING] slow-p95"}
    fields = {f["text"].split("\n", 1)[0]: f["text"].split("\n", 1)[1] for f in blocks[1]["fields"]}
    assert fields["*Function*"] == "`resize`" and fields["*Value*"] == "612.5" and fields["*Status*"] == "FIRING"
    assert all(f["type"] == "mrkdwn" for f in blocks[1]["fields"])
    assert blocks[2]["elements"][0]["type"] == "mrkdwn"


def test_slack_500_is_retried_and_every_attempt_counted(receiver: Any, notifier: Notifier) -> None:
    receiver.answer(500, b"internal_error", times=2)
    attempts = notifier.deliver(channel({"type": "slack", "webhook_url": receiver.url("/s")}), notice())
    assert [(a.status, a.http_status) for a in attempts] == [("failed", 500), ("failed", 500), ("delivered", 200)]
    assert len(receiver.requests) == 3  # slack-sdk did not retry on its own


def test_slack_429_honours_retry_after(receiver: Any, notifier: Notifier, rec: Recorder) -> None:
    receiver.answer(429, b"rate_limited", {"Retry-After": "3"})
    attempts = notifier.deliver(channel({"type": "slack", "webhook_url": receiver.url("/s")}), notice())
    assert [a.http_status for a in attempts] == [429, 200] and rec.sleeps == [3.0]


def test_slack_4xx_is_final(receiver: Any, notifier: Notifier) -> None:
    receiver.answer(404, b"no_service")
    attempts = notifier.deliver(channel({"type": "slack", "webhook_url": receiver.url("/s")}), notice())
    assert [(a.status, a.http_status, a.error) for a in attempts] == [("failed", 404, "HTTP 404: no_service")]


def test_slack_200_without_ok_body_is_a_failure(receiver: Any, notifier: Notifier) -> None:
    receiver.answer(200, b"invalid_token")
    attempts = notifier.deliver(channel({"type": "slack", "webhook_url": receiver.url("/s")}), notice())
    assert len(attempts) == 1 and attempts[0].status == "failed" and "invalid_token" in (attempts[0].error or "")


def test_slack_connection_refused_is_retried(dead_url: str, rec: Recorder) -> None:
    with Notifier(sleep=rec.sleep, clock=rec.clock, max_attempts=2) as n:
        attempts = n.deliver(channel({"type": "slack", "webhook_url": dead_url}), notice())
    assert [a.status for a in attempts] == ["failed", "failed"] and len(rec.sleeps) == 1


def test_email_goes_out_over_smtp(smtp: Any, rec: Recorder) -> None:
    sink, port = smtp
    ch = channel({"type": "email", "to": ["oncall@example.com", "boss@example.org"]})
    with Notifier(sleep=rec.sleep, clock=rec.clock, smtp=SmtpConfig(SmtpServer("127.0.0.1", port), "cf@x.io")) as n:
        attempts = n.deliver(ch, notice())
    assert [(a.channel, a.status) for a in attempts] == [("email", "delivered")]
    (m,) = sink.messages
    assert m["from"] == "cf@x.io" and m["to"] == ["oncall@example.com", "boss@example.org"]
    parsed = email.message_from_bytes(m["content"])
    assert parsed["Subject"] == "[FIRING] slow-p95 on resize (value 612.5)"
    assert parsed["Message-ID"] == "<msg_2bXkq9@cloudfn>"
    text = parsed.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Rule:     slow-p95" in text and "Function: resize" in text and "Value:    612.5" in text


def test_email_4xx_is_retried_5xx_is_not(smtp: Any, rec: Recorder) -> None:
    sink, port = smtp
    ch = channel({"type": "email", "to": "oncall@example.com"})
    with Notifier(sleep=rec.sleep, clock=rec.clock, smtp=SmtpConfig(SmtpServer("127.0.0.1", port), "cf@x.io")) as n:
        sink.fail_first = 1
        attempts = n.deliver(ch, notice())
        assert [a.status for a in attempts] == ["failed", "delivered"] and "SMTP 451" in (attempts[0].error or "")
        sink.fail_first, sink.fail_code = 1, "554 5.7.1 rejected"
        attempts = n.deliver(ch, notice())
        assert [a.status for a in attempts] == ["failed"] and "SMTP 554" in (attempts[0].error or "")
    assert len(sink.messages) == 1


def test_email_without_smtp_configured_fails_once(notifier: Notifier) -> None:
    attempts = notifier.deliver(channel({"type": "email", "to": "a@example.com"}), notice())
    assert len(attempts) == 1 and attempts[0].status == "failed" and "SMTP" in (attempts[0].error or "")


def test_sms_posts_to_the_generic_provider(receiver: Any, rec: Recorder) -> None:
    receiver.answer(500, b"").answer(202, b'{"id": "sms1"}')
    with Notifier(sleep=rec.sleep, clock=rec.clock, sms=JsonSms(receiver.url("/sms"), "tok")) as n:
        attempts = n.deliver(channel({"type": "sms", "to": "+4915112345678"}), notice())
    assert [(a.status, a.http_status) for a in attempts] == [("failed", 500), ("delivered", 202)]
    req = receiver.requests[-1]
    assert req.path == "/sms" and req.headers["authorization"] == "Bearer tok"
    assert req.headers["idempotency-key"] == "msg_2bXkq9"
    assert json.loads(req.body) == {"to": "+4915112345678", "body": "[FIRING] slow-p95 on resize (value 612.5)"}
