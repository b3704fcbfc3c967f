"""Alert rule models (CONTRACT.md's rule shape) and `parse_rule`, which turns bad input into InvalidInput."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import InvalidInput
from core.models import NAME_RE

Metric = Literal["duration_ms", "cpu_ms", "peak_memory_mb", "error_rate", "invocations"]
Aggregate = Literal["avg", "max", "p50", "p95", "p99", "count", "rate"]
Op = Literal[">", ">=", "<", "<="]

THRESHOLD_FIELDS = ("metric", "aggregate", "op", "value", "window_s")
ANOMALY_FIELDS = ("min_score", "anomaly_kinds")
CHANNEL_TYPES = ("webhook", "slack", "email", "sms")
MAX_WINDOW_S = 31 * 86400.0

_EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")
_UNION_MEMBER_RE = re.compile(r"[-\[(]|^(str|int|float|bool|list|dict)$")
_E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


def check_http_url(url: str) -> str:
    """Return `url` unchanged if it is an absolute http(s) URL with a host, else raise ValueError."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute http:// or https:// URL")
    if any(c.isspace() for c in url):
        raise ValueError(f"{url!r} contains whitespace")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and literal.is_link_local:  # cloud metadata services live there (169.254.169.254)
        raise ValueError(f"{url!r} points at a link-local address (where cloud metadata services answer)")
    return url


def secret_key(secret: str) -> bytes:
    """The HMAC key for a channel secret: a `whsec_` secret's base64-decoded bytes, else its UTF-8 bytes."""
    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a secret starting with 'whsec_' must continue with valid base64") from None
        if not key:
            raise ValueError("a 'whsec_' secret must not be empty after the prefix")
        return key
    return secret.encode("utf-8")


class _Strict(BaseModel):
    """Base for rule models: unknown fields are errors, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class WebhookChannel(_Strict):
    """A generic webhook: Alertmanager v4 payload signed per Standard Webhooks with `secret`."""

    type: Literal["webhook"]
    url: str = Field(max_length=2048)
    secret: str = Field(min_length=1, max_length=1024)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_http_url(v)

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        secret_key(v)
        return v


class SlackChannel(_Strict):
    """A Slack incoming-webhook URL."""

    type: Literal["slack"]
    webhook_url: str = Field(max_length=2048)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_http_url(v)


class EmailChannel(_Strict):
    """One or more e-mail recipients."""

    type: Literal["email"]
    to: str | list[str]

    @field_validator("to")
    @classmethod
    def _to(cls, v: str | list[str]) -> str | list[str]:
        addrs = [v] if isinstance(v, str) else v
        if not addrs:
            raise ValueError("needs at least one e-mail address")
        if len(addrs) > 50:
            raise ValueError("at most 50 e-mail addresses")
        for a in addrs:
            if not _EMAIL_RE.match(a.strip()):
                raise ValueError(f"{a!r} is not an e-mail address like name@example.com")
        return v.strip() if isinstance(v, str) else [a.strip() for a in v]

    @property
    def recipients(self) -> list[str]:
        """The addresses as a list."""
        return [self.to] if isinstance(self.to, str) else list(self.to)


class SmsChannel(_Strict):
    """A phone number in E.164 form, sent through the platform's SMS provider (Twilio or generic JSON)."""

    type: Literal["sms"]
    to: str

    @field_validator("to")
    @classmethod
    def _to(cls, v: str) -> str:
        if not _E164_RE.match(v):
            raise ValueError(f"{v!r} is not an E.164 phone number like +4915112345678")
        return v


Channel = Annotated[WebhookChannel | SlackChannel | EmailChannel | SmsChannel, Field(discriminator="type")]


class AlertRuleSpec(_Strict):
    """An alert rule as a user writes it (no id, no state)."""

    name: str = Field(min_length=1, max_length=200)
    function: str
    kind: Literal["threshold", "anomaly"]
    channels: list[Channel] = Field(default_factory=list, max_length=20)  # none: the routing tree decides
    metric: Metric | None = None
    aggregate: Aggregate | None = None
    op: Op | None = None
    value: float | None = None
    window_s: float | None = Field(default=None, gt=0, le=MAX_WINDOW_S)
    for_s: float = Field(default=0.0, ge=0, le=MAX_WINDOW_S)
    min_score: float | None = Field(default=None, ge=0, le=1)
    anomaly_kinds: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        default=None, min_length=1, max_length=50
    )
    repeat_interval_s: float | None = Field(
        default=None, gt=0, le=MAX_WINDOW_S, description="re-notify while firing; None = once per episode"
    )
    labels: dict[str, str] = Field(default_factory=dict, max_length=20)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=20)

    @field_validator("function")
    @classmethod
    def _function(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a function name (lowercase letters, digits and '-', up to 63)")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k):
                raise ValueError(f"label name {k!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
            if k in ("alertname", "function", "tenant"):
                raise ValueError(f"label {k!r} is set by the platform")
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> AlertRuleSpec:
        if self.kind == "threshold":
            missing = [f for f in THRESHOLD_FIELDS if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a threshold rule needs {', '.join(THRESHOLD_FIELDS)}; missing: {', '.join(missing)}")
            extra = [f for f in ANOMALY_FIELDS if getattr(self, f) is not None]
            if extra:
                raise ValueError(f"{', '.join(extra)} {_verb(extra)} only to anomaly rules; remove {_it(extra)}")
        else:
            extra = [f for f in THRESHOLD_FIELDS if getattr(self, f) is not None]
            if self.for_s:
                extra.append("for_s")
            if extra:
                raise ValueError(f"{', '.join(extra)} {_verb(extra)} only to threshold rules; remove {_it(extra)}")
        return self


def _verb(names: list[str]) -> str:
    return "applies" if len(names) == 1 else "apply"


def _it(names: list[str]) -> str:
    return "it" if len(names) == 1 else "them"


def _is_tag(loc: tuple[int | str, ...], i: int) -> bool:
    """Whether loc[i] names a union member (a channel type, "constrained-str", ...) rather than a field."""
    part = loc[i]
    if not isinstance(part, str) or i == 0:
        return False
    if loc[0] == "channels" and i == 2 and part in CHANNEL_TYPES:
        return True
    return bool(_UNION_MEMBER_RE.search(part))


def _loc(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as `channels[0].url`, dropping union tags."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_tag(loc, i):
            out += f".{part}" if out else part
    return out


def _message(err: Any) -> str:
    """One pydantic error as a sentence a person can act on."""
    loc = _loc(tuple(err.get("loc", ())))
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if kind == "extra_forbidden":
        msg = "unknown field"
    elif kind == "missing":
        msg = "field required"
    elif kind == "union_tag_not_found":
        msg = f"field required: one of {', '.join(CHANNEL_TYPES)}"
        loc = f"{loc}.type" if loc else "type"
    elif kind == "union_tag_invalid":
        msg = f"unknown channel type {err.get('ctx', {}).get('tag')!r}; use one of {', '.join(CHANNEL_TYPES)}"
        loc = f"{loc}.type" if loc else "type"
    elif kind == "too_short" and loc == "channels":
        msg = "needs at least one channel"
    elif kind == "literal_error" and "input" in err:
        msg = f"{msg} (got {err['input']!r})"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{loc}: {msg}" if loc else msg


def parse_rule(data: object) -> AlertRuleSpec:
    """Validate a rule; raise InvalidInput naming the first problem and its field path."""
    if not isinstance(data, dict):
        raise InvalidInput(f"an alert rule must be a JSON object, got {type(data).__name__}")
    try:
        return AlertRuleSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = [{"field": _loc(tuple(e["loc"])), "message": _message(e)} for e in errors]
        detail: dict[str, object] = {"errors": problems}
        raise InvalidInput(f"invalid alert rule: {_message(errors[0])}", detail=detail) from None
