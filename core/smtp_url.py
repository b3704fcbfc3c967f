"""`CLOUDFN_SMTP_URL` parsing: smtp://[user:pass@]host[:port][?starttls=true] and smtps://[user:pass@]host[:port]."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
SUBMISSION_PORT = 587  # smtp:// with starttls=true and no port: RFC 6409 message submission
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send mail: ssl = TLS from the first byte (smtps), starttls = upgrade after EHLO."""

    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False


def redact(url: str) -> str:
    """The URL with its password replaced by `***`, for error messages and logs."""
    head, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, hostpart = rest.partition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{head}://{userinfo}@{hostpart}"


def _flag(name: str, value: str, shown: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{shown}: {name}={value!r} must be true or false")


def parse_smtp_url(url: str) -> SmtpServer:
    """Parse an SMTP URL; raise ValueError with a message that says what to write instead."""
    shown = redact(url.strip())
    example = "write it like smtp://user:pass@mail.example.com:587?starttls=true or smtps://mail.example.com"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a valid URL ({exc}); {example}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        got = parts.scheme or "missing"
        raise ValueError(f"{shown!r}: the scheme must be smtp:// or smtps://, not {got}; {example}")
    if not parts.hostname:
        raise ValueError(f"{shown!r} has no host; {example}")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"{shown!r}: an SMTP URL has no path or fragment; {example}")
    starttls = False
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "starttls":
            raise ValueError(f"{shown!r}: unknown option {name!r} (the only option is starttls=true)")
        starttls = _flag(name, value, repr(shown))
    if starttls and scheme == "smtps":
        raise ValueError(f"{shown!r}: starttls is for smtp:// only; smtps:// is TLS from the start")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not user:
        raise ValueError(f"{shown!r}: a password needs a user (smtp://user:pass@host)")
    if port is None:
        port = SUBMISSION_PORT if starttls else DEFAULT_PORTS[scheme]
    if port == 0:
        raise ValueError(f"{shown!r}: port 0 is not a port")
    return SmtpServer(host=parts.hostname, port=port, user=user, password=password, starttls=starttls,
                      ssl=scheme == "smtps")
