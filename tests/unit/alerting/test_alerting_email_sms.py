"""E-mail and SMS as the platform settings configure them, against real receivers: aiosmtpd and a Twilio stand-in."""

from __future__ import annotations

import base64
import email
import random
from email.message import Message
from typing import Any

import pytest

from analytics.alerting.channel_config import SmtpConfig, TwilioSms
from analytics.alerting.delivery import Notification, Notifier
from analytics.alerting.rules import Channel, parse_rule
from core.smtp_url import parse_smtp_url
from tests.receivers import Accounts, LocalCa, MailSink, TwilioStandIn, smtp_controller

SENDER = "CloudFn Alerts <alerts@cloudfn.example>"


def channel(data: dict[str, Any]) -> Channel:
    return parse_rule({"name": "r", "function": "fn", "kind": "anomaly", "channels": [data]}).channels[0]


def notice(status: str = "firing") -> Notification:
    return Notification(id="cfa-7-firing", rule_name="slow-p95", function="resize", status=status,  # type: ignore[arg-type]
                        value=612.5, started_at=1_700_000_000.0, labels={"severity": "page"},
                        annotations={"summary": "resize: anomaly detected"},
                        generator_url="http://cloudfn.local/v1/alerts?rule_id=7")


def notifier(url: str | None = None, *, tls: Any = None, sms: TwilioSms | None = None) -> Notifier:
    smtp = SmtpConfig(parse_smtp_url(url), SENDER) if url else None
    return Notifier(smtp=smtp, sms=sms, tls=tls, sleep=lambda s: None, rng=random.Random(1), timeout_s=5,
                    max_attempts=2)


def body_of(m: dict[str, Any]) -> tuple[Message, str]:
    parsed = email.message_from_bytes(m["content"])
    return parsed, parsed.get_payload(decode=True).decode()  # type: ignore[union-attr]


def test_plain_smtp_relay_gets_subject_body_and_headers(smtp: Any) -> None:
    sink, port = smtp
    with notifier(f"smtp://127.0.0.1:{port}") as n:
        attempts = n.deliver(channel({"type": "email", "to": ["oncall@example.com", "lead@example.org"]}), notice())
    assert [a.status for a in attempts] == ["delivered"]
    (m,) = sink.messages
    assert m["from"] == "alerts@cloudfn.example" and m["to"] == ["oncall@example.com", "lead@example.org"]
    assert not m["tls"] and m["login"] is None
    parsed, text = body_of(m)
    assert parsed["Subject"] == "[FIRING] slow-p95 on resize (value 612.5)"
    assert parsed["From"] == SENDER and parsed["To"] == "oncall@example.com, lead@example.org"
    assert parsed["Message-ID"] == "<cfa-7-firing@cloudfn>" and parsed["Date"]
    assert "Rule:     slow-p95" in text and "resize: anomaly detected" in text
    assert "http://cloudfn.local/v1/alerts?rule_id=7" in text


def test_starttls_and_login_as_the_url_says(test_ca: LocalCa) -> None:
    sink = MailSink()
    controller, port = smtp_controller(sink, tls_context=test_ca.server_context(), require_starttls=True,
                                       authenticator=Accounts("alerts", "p@ss:word"), auth_required=True)
    try:
        with notifier(f"smtp://alerts:p%40ss%3Aword@127.0.0.1:{port}?starttls=true",
                      tls=test_ca.client_context()) as n:
            attempts = n.deliver(channel({"type": "email", "to": "oncall@example.com"}), notice())
    finally:
        controller.stop()
    assert [a.status for a in attempts] == ["delivered"], attempts
    (m,) = sink.messages
    assert m["tls"] and m["login"] == b"alerts"
    assert body_of(m)[0]["Subject"] == "[FIRING] slow-p95 on resize (value 612.5)"


def test_wrong_password_is_a_final_failure(test_ca: LocalCa) -> None:
    sink = MailSink()
    controller, port = smtp_controller(sink, tls_context=test_ca.server_context(), require_starttls=True,
                                       authenticator=Accounts("alerts", "right"), auth_required=True)
    try:
        with notifier(f"smtp://alerts:wrong@127.0.0.1:{port}?starttls=true", tls=test_ca.client_context()) as n:
            attempts = n.deliver(channel({"type": "email", "to": "oncall@example.com"}), notice())
    finally:
        controller.stop()
    assert [a.status for a in attempts] == ["failed"] and "SMTP 535" in (attempts[0].error or "")
    assert sink.messages == []


def test_smtps_is_tls_from_the_first_byte(test_ca: LocalCa) -> None:
    sink = MailSink()
    controller, port = smtp_controller(sink, ssl_context=test_ca.server_context())
    try:
        with notifier(f"smtps://127.0.0.1:{port}", tls=test_ca.client_context()) as n:
            attempts = n.deliver(channel({"type": "email", "to": "oncall@example.com"}), notice("resolved"))
    finally:
        controller.stop()
    assert [a.status for a in attempts] == ["delivered"], attempts
    (m,) = sink.messages
    assert m["tls"] and body_of(m)[0]["Subject"].startswith("[RESOLVED] slow-p95 on resize")


def test_an_untrusted_certificate_is_refused_not_retried(test_ca: LocalCa) -> None:
    sink = MailSink()
    controller, port = smtp_controller(sink, ssl_context=test_ca.server_context())
    try:
        with notifier(f"smtps://127.0.0.1:{port}") as n:  # the system's CAs do not know the test CA
            attempts = n.deliver(channel({"type": "email", "to": "oncall@example.com"}), notice())
    finally:
        controller.stop()
    assert [a.status for a in attempts] == ["failed"] and "certificate" in (attempts[0].error or "")
    assert sink.messages == []


def twilio_of(stand_in: TwilioStandIn, token: str | None = None) -> TwilioSms:
    return TwilioSms(stand_in.url, stand_in.sid, token or stand_in.token, "+15005550006")


def test_sms_is_a_twilio_form_post_with_basic_auth(twilio: TwilioStandIn) -> None:
    with notifier(sms=twilio_of(twilio)) as n:
        attempts = n.deliver(channel({"type": "sms", "to": "+4915112345678"}), notice())
    assert [(a.status, a.http_status) for a in attempts] == [("delivered", 201)]
    (m,) = twilio.messages
    assert m["form"] == {"To": "+4915112345678", "From": "+15005550006",
                         "Body": "[FIRING] slow-p95 on resize (value 612.5)"}
    user, _, password = base64.b64decode(m["headers"]["authorization"].split()[1]).decode().partition(":")
    assert (user, password) == (twilio.sid, twilio.token)
    assert m["headers"]["content-type"].startswith("application/x-www-form-urlencoded")


def test_twilio_rejecting_the_credentials_is_final(twilio: TwilioStandIn) -> None:
    with notifier(sms=twilio_of(twilio, token="wrong")) as n:
        attempts = n.deliver(channel({"type": "sms", "to": "+4915112345678"}), notice())
    assert [(a.status, a.http_status) for a in attempts] == [("failed", 401)]
    assert "20003" in (attempts[0].error or "") and twilio.messages == []


def test_twilio_5xx_is_retried(twilio: TwilioStandIn) -> None:
    twilio.fail_first = 1
    with notifier(sms=twilio_of(twilio)) as n:
        attempts = n.deliver(channel({"type": "sms", "to": "+4915112345678"}), notice())
    assert [(a.status, a.http_status) for a in attempts] == [("failed", 503), ("delivered", 201)]
    assert len(twilio.messages) == 1


def test_long_text_is_cut_to_an_sms(twilio: TwilioStandIn) -> None:
    long = Notification(id="x", rule_name="r" * 300, function="f" * 60, status="firing", value=1.0,
                        started_at=1_700_000_000.0)
    with notifier(sms=twilio_of(twilio)) as n:
        n.deliver(channel({"type": "sms", "to": "+4915112345678"}), long)
    body = twilio.messages[0]["form"]["Body"]
    assert len(body) <= 320 and body.endswith("…")


@pytest.mark.parametrize(("kind", "data", "needle"), [
    ("email", {"type": "email", "to": "a@example.com"}, "CLOUDFN_SMTP_URL"),
    ("sms", {"type": "sms", "to": "+4915112345678"}, "CLOUDFN_SMS_SID"),
])
def test_unconfigured_channels_fail_once_naming_the_setting(kind: str, data: dict[str, Any], needle: str) -> None:
    with notifier() as n:
        attempts = n.deliver(channel(data), notice())
    assert len(attempts) == 1 and attempts[0].status == "failed" and needle in (attempts[0].error or "")
