"""Deliver a notification to one channel with retries (backoff, jitter, Retry-After), recording attempts."""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import httpx

from analytics.alerting.channel_config import JsonSms, SmsProvider, SmtpConfig, TwilioSms
from analytics.alerting.notification import Notice, Notification
from analytics.alerting.rules import Channel, EmailChannel, SlackChannel, SmsChannel, WebhookChannel
from analytics.alerting.transports import (
    USER_AGENT,
    Outcome,
    post_slack,
    post_sms,
    post_twilio,
    post_webhook,
    send_email,
)

__all__ = ["Attempt", "Notification", "Notifier", "delivered"]


@dataclass
class Attempt:
    """One delivery attempt, as `GET /v1/alerts` lists it under `deliveries`."""

    channel: str
    attempt: int
    status: Literal["delivered", "failed"]
    at: float
    error: str | None = None
    http_status: int | None = None


def delivered(attempts: list[Attempt]) -> bool:
    """Whether the last attempt got through (False: the caller should keep the notice and try later)."""
    return bool(attempts) and attempts[-1].status == "delivered"


class Notifier:
    """Sends notifications to channels; synchronous and blocking (run it in a thread). Thread-safe.

    Worst case one `deliver` blocks for max_attempts x timeout_s plus the backoffs (or Retry-After, each capped
    at retry_after_max_s): about 33 s with the defaults, longer only if a server asks for it.
    """

    def __init__(
        self,
        *,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        timeout_s: float = 5.0,
        smtp: SmtpConfig | None = None,
        sms: SmsProvider | None = None,
        tls: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.timeout_s = timeout_s
        self.smtp, self.sms, self.tls = smtp, sms, tls
        self._sleep, self._clock = sleep, clock
        self._rng = rng or random.Random()
        self._http = httpx.Client(timeout=timeout_s, follow_redirects=False, headers={"user-agent": USER_AGENT})

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def backoff(self, failed_attempt: int) -> float:
        """Delay after failed attempt n: exponential, capped, equal jitter (half fixed, half random)."""
        base = min(self.backoff_max_s, self.backoff_s * 2 ** (failed_attempt - 1))
        return base / 2 + self._rng.uniform(0, base / 2)

    def deliver(
        self,
        channel: Channel,
        notification: Notice,
        *,
        label: str | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> list[Attempt]:
        """Send until delivered, a final failure, or `max_attempts`; return every attempt. Never raises."""
        name = label or channel.type
        attempts: list[Attempt] = []
        for n in range(1, self.max_attempts + 1):
            try:
                outcome = self._once(channel, notification)
            except Exception as exc:  # a bug must not lose the record of the attempt
                outcome = Outcome(ok=False, retryable=False, error=f"internal error: {type(exc).__name__}: {exc}")
            attempt = Attempt(
                channel=name,
                attempt=n,
                status="delivered" if outcome.ok else "failed",
                at=self._clock(),
                error=outcome.error,
                http_status=outcome.http_status,
            )
            attempts.append(attempt)
            if on_attempt is not None:
                on_attempt(attempt)
            if outcome.ok or not outcome.retryable or n == self.max_attempts:
                break
            if outcome.retry_after_s is not None:
                delay = min(max(outcome.retry_after_s, 0.0), self.retry_after_max_s)
            else:
                delay = self.backoff(n)
            self._sleep(delay)
        return attempts

    def send_once(self, channel: Channel, notice: Notice) -> Outcome:
        """One attempt on one channel (the outbox worker schedules retries itself). Never raises."""
        try:
            return self._once(channel, notice)
        except Exception as exc:  # a bug must not lose the record of the attempt
            return Outcome(ok=False, retryable=False, error=f"internal error: {type(exc).__name__}: {exc}")

    def _once(self, channel: Channel, n: Notice) -> Outcome:
        """One attempt on one channel."""
        if isinstance(channel, WebhookChannel):
            return post_webhook(self._http, channel.url, channel.secret, n, int(self._clock()))
        if isinstance(channel, SlackChannel):
            return post_slack(channel.webhook_url, n, self.timeout_s)
        if isinstance(channel, EmailChannel):
            if self.smtp is None:
                return Outcome(ok=False, error="e-mail is not configured: set CLOUDFN_SMTP_URL and CLOUDFN_SMTP_FROM")
            return send_email(smtp=self.smtp, recipients=channel.recipients, notification=n,
                              timeout_s=self.timeout_s, tls=self.tls)
        if isinstance(channel, SmsChannel):
            if isinstance(self.sms, TwilioSms):
                return post_twilio(self._http, self.sms, channel.to, n)
            if isinstance(self.sms, JsonSms):
                return post_sms(self._http, self.sms.url, self.sms.token, channel.to, n)
            return Outcome(ok=False, error="SMS is not configured: set CLOUDFN_SMS_SID, CLOUDFN_SMS_TOKEN and "
                                           "CLOUDFN_SMS_FROM")
        return Outcome(ok=False, error=f"unsupported channel {type(channel).__name__}")
