"""The platform's channel settings (SMTP, SMS provider) and which settings a rule's channels still lack."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from core.settings import TWILIO_API
from core.smtp_url import SmtpServer, parse_smtp_url

if TYPE_CHECKING:
    from core.settings import Settings


@dataclass(frozen=True)
class SmtpConfig:
    """An SMTP server and the envelope/header sender."""

    server: SmtpServer
    sender: str


@dataclass(frozen=True)
class TwilioSms:
    """Twilio's Messages API (or anything speaking its shape): form POST with basic auth SID:TOKEN."""

    base_url: str
    sid: str
    token: str = field(repr=False)
    sender: str

    @property
    def endpoint(self) -> str:
        """`{base}/2010-04-01/Accounts/{SID}/Messages.json`."""
        return f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{quote(self.sid, safe='')}/Messages.json"


@dataclass(frozen=True)
class JsonSms:
    """A generic provider: JSON `{"to", "body"}` POSTed to `url`, with an optional bearer token."""

    url: str
    token: str | None = field(default=None, repr=False)


SmsProvider = TwilioSms | JsonSms


@dataclass(frozen=True)
class ChannelSettings:
    """What the platform can deliver through; `missing` names the variables each unconfigured channel needs."""

    smtp: SmtpConfig | None = None
    sms: SmsProvider | None = None
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, s: Settings) -> ChannelSettings:
        """Build from Settings (CLOUDFN_SMTP_*, CLOUDFN_SMS_*)."""
        missing: dict[str, tuple[str, ...]] = {}
        smtp = None
        need = tuple(n for n, v in (("CLOUDFN_SMTP_URL", s.smtp_url), ("CLOUDFN_SMTP_FROM", s.smtp_from)) if not v)
        if need:
            missing["email"] = need
        elif s.smtp_url and s.smtp_from:
            smtp = SmtpConfig(parse_smtp_url(s.smtp_url), s.smtp_from)
        sms: SmsProvider | None = None
        if s.sms_provider == "json":
            if s.sms_url.rstrip("/") == TWILIO_API:
                missing["sms"] = ("CLOUDFN_SMS_URL (the JSON provider's endpoint)",)
            else:
                sms = JsonSms(s.sms_url, s.sms_token)
        else:
            values = (("CLOUDFN_SMS_SID", s.sms_sid), ("CLOUDFN_SMS_TOKEN", s.sms_token),
                      ("CLOUDFN_SMS_FROM", s.sms_from))
            need = tuple(n for n, v in values if not v)
            if need:
                missing["sms"] = need
            elif s.sms_sid and s.sms_token and s.sms_from:
                sms = TwilioSms(s.sms_url, s.sms_sid, s.sms_token, s.sms_from)
        return cls(smtp=smtp, sms=sms, missing=missing)

    def refusal(self, channel_types: Iterable[str]) -> str | None:
        """Why a rule with these channel types cannot deliver here (None: it can)."""
        problems = [f"channel {t} needs {', '.join(self.missing[t])}"
                    for t in dict.fromkeys(channel_types) if t in self.missing]
        if not problems:
            return None
        return "; ".join(problems) + " (platform settings; set them where the platform starts, then restart it)"
