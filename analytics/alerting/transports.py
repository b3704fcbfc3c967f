"""One delivery attempt per channel kind; each returns an Outcome saying whether a retry makes sense."""

from __future__ import annotations

import http.client
import json
import re
import smtplib
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parsedate_to_datetime

import httpx
from slack_sdk.errors import SlackRequestError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from analytics.alerting.channel_config import SmtpConfig, TwilioSms
from analytics.alerting.notification import Notice
from analytics.alerting.signing import signature_headers

RETRYABLE_STATUS = frozenset({408, 429})
SMS_MAX_CHARS = 320
USER_AGENT = "cloudfn-alerting/1"


@dataclass
class Outcome:
    """The result of one attempt."""

    ok: bool
    retryable: bool = False
    error: str | None = None
    http_status: int | None = None
    retry_after_s: float | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (delta-seconds or HTTP-date) as seconds to wait, or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, at - (time.time() if now is None else now))


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for k, v in (headers or {}).items():
        if k.lower() == name:
            return v
    return None


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def classify_http(status: int, headers: Mapping[str, str] | None, body: str) -> Outcome:
    """Map an HTTP response to an Outcome: 2xx delivered; 408, 429 and 5xx retryable; other codes final."""
    if 200 <= status < 300:
        return Outcome(ok=True, http_status=status)
    retryable = status in RETRYABLE_STATUS or status >= 500
    return Outcome(
        ok=False,
        retryable=retryable,
        error=f"HTTP {status}" + (f": {_excerpt(body)}" if body.strip() else ""),
        http_status=status,
        retry_after_s=parse_retry_after(_header(headers, "retry-after")) if retryable else None,
    )


def _transport_error(exc: Exception) -> Outcome:
    """A connection-level failure: retryable unless the request itself can never work."""
    final = isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL)
    return Outcome(ok=False, retryable=not final, error=f"{type(exc).__name__}: {exc}".strip())


def post_webhook(client: httpx.Client, url: str, secret: str, notification: Notice, timestamp: int) -> Outcome:
    """POST the Alertmanager payload, signed per Standard Webhooks over the exact bytes sent."""
    body = json.dumps(notification.alertmanager(), separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    headers.update(signature_headers(secret, notification.id, timestamp, body))
    try:
        resp = client.post(url, content=body, headers=headers)
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        return _transport_error(exc)
    return classify_http(resp.status_code, resp.headers, resp.text)


def sms_text(notification: Notice) -> str:
    """The SMS body: the one-line summary, cut to SMS_MAX_CHARS."""
    text = notification.subject()
    return text if len(text) <= SMS_MAX_CHARS else text[: SMS_MAX_CHARS - 1] + "…"


def post_sms(client: httpx.Client, url: str, token: str | None, to: str, notification: Notice) -> Outcome:
    """POST `{"to", "body"}` to a generic JSON SMS provider (bearer token; the notice id as Idempotency-Key)."""
    headers = {"user-agent": USER_AGENT, "idempotency-key": notification.id}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        resp = client.post(url, json={"to": to, "body": sms_text(notification)}, headers=headers)
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        return _transport_error(exc)
    return classify_http(resp.status_code, resp.headers, resp.text)


def post_twilio(client: httpx.Client, provider: TwilioSms, to: str, notification: Notice) -> Outcome:
    """Form POST `To`, `From`, `Body` to Twilio's Messages API with basic auth SID:TOKEN."""
    form = {"To": to, "From": provider.sender, "Body": sms_text(notification)}
    try:
        resp = client.post(provider.endpoint, data=form, auth=(provider.sid, provider.token))
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        return _transport_error(exc)
    return classify_http(resp.status_code, resp.headers, resp.text)


def post_slack(webhook_url: str, notification: Notice, timeout_s: float) -> Outcome:
    """Send the Block Kit message with slack-sdk (its own retries at 0: our loop counts attempts)."""
    client = WebhookClient(
        webhook_url,
        timeout=max(1, round(timeout_s)),
        user_agent_prefix=USER_AGENT,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=0),
            ServerErrorRetryHandler(max_retry_count=0),
        ],
    )
    try:
        resp = client.send_dict(notification.slack())
    except SlackRequestError as exc:
        return Outcome(ok=False, retryable=False, error=f"SlackRequestError: {exc}")
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
        return Outcome(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
    headers = dict(resp.headers.items()) if resp.headers else {}
    body = resp.body or ""
    if resp.status_code == 200 and body == "ok":
        return Outcome(ok=True, http_status=200)
    if resp.status_code == 200:
        return Outcome(ok=False, error=f"Slack answered 200 with {_excerpt(body)!r}, not 'ok'", http_status=200)
    return classify_http(resp.status_code, headers, body)


def _connect(smtp: SmtpConfig, timeout_s: float, tls: ssl.SSLContext | None) -> smtplib.SMTP:
    """Open the connection the URL asks for: TLS from the start (smtps), STARTTLS, or plain; then log in."""
    srv = smtp.server
    conn: smtplib.SMTP
    if srv.ssl:
        conn = smtplib.SMTP_SSL(srv.host, srv.port, timeout=timeout_s, context=tls or ssl.create_default_context())
    else:
        conn = smtplib.SMTP(srv.host, srv.port, timeout=timeout_s)
    try:
        if srv.starttls:
            conn.starttls(context=tls or ssl.create_default_context())
        if srv.user:
            conn.login(srv.user, srv.password or "")
    except BaseException:
        conn.close()
        raise
    return conn


def send_email(
    *,
    smtp: SmtpConfig,
    recipients: Sequence[str],
    notification: Notice,
    timeout_s: float,
    tls: ssl.SSLContext | None = None,
) -> Outcome:
    """Send a plain-text e-mail; SMTP 4xx and connection errors are retryable, 5xx and TLS failures final."""
    msg = EmailMessage()
    msg["Subject"] = notification.subject()
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9._-]', '-', notification.id)}@cloudfn>"
    msg.set_content(notification.text())
    try:
        with _connect(smtp, timeout_s, tls) as conn:
            refused = conn.send_message(msg, to_addrs=list(recipients))
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        return Outcome(ok=False, retryable=any(400 <= c < 500 for c in codes), error=f"recipients refused: {codes}")
    except smtplib.SMTPResponseException as exc:
        msg_text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return Outcome(
            ok=False,
            retryable=400 <= exc.smtp_code < 500,
            error=f"SMTP {exc.smtp_code}: {_excerpt(str(msg_text))}",
        )
    except smtplib.SMTPNotSupportedError as exc:
        return Outcome(ok=False, retryable=False, error=f"SMTPNotSupportedError: {exc}")
    except ssl.SSLCertVerificationError as exc:
        return Outcome(ok=False, retryable=False, error=f"TLS certificate not trusted: {exc}")
    except (smtplib.SMTPException, OSError) as exc:
        return Outcome(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
    if refused:
        return Outcome(ok=True, error=f"some recipients refused: {sorted(refused)}")
    return Outcome(ok=True)
