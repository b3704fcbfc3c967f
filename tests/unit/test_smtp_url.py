"""CLOUDFN_SMTP_URL: every form operators write, and bad URLs refused with a message saying what to write."""

from __future__ import annotations

import pytest

from core.smtp_url import SmtpServer, parse_smtp_url, redact


@pytest.mark.parametrize(("url", "want"), [
    ("smtp://localhost", SmtpServer("localhost", 25)),
    ("smtp://relay.internal:2525", SmtpServer("relay.internal", 2525)),
    ("smtp://127.0.0.1:1025/", SmtpServer("127.0.0.1", 1025)),
    ("smtp://user:pass@mail.example.com:587?starttls=true",
     SmtpServer("mail.example.com", 587, "user", "pass", starttls=True)),
    ("smtp://user:pass@mail.example.com?starttls=true", SmtpServer("mail.example.com", 587, "user", "pass", True)),
    ("smtp://mail.example.com:25?starttls=false", SmtpServer("mail.example.com", 25)),
    ("SMTP://mail.example.com?starttls=1", SmtpServer("mail.example.com", 587, starttls=True)),
    ("smtps://mail.example.com", SmtpServer("mail.example.com", 465, ssl=True)),
    ("smtps://apikey:s3cr%40t%3Ax@smtp.example.com:2465",
     SmtpServer("smtp.example.com", 2465, "apikey", "s3cr@t:x", ssl=True)),
    ("smtp://alerts%40example.com:pw@mail.example.com", SmtpServer("mail.example.com", 25, "alerts@example.com", "pw")),
    ("smtp://user@mail.example.com", SmtpServer("mail.example.com", 25, "user")),
    ("smtp://[::1]:25", SmtpServer("::1", 25)),
    ("  smtp://localhost:25  ", SmtpServer("localhost", 25)),
])
def test_parses_every_form(url: str, want: SmtpServer) -> None:
    assert parse_smtp_url(url) == want


@pytest.mark.parametrize(("url", "needle"), [
    ("http://mail.example.com", "scheme must be smtp:// or smtps://"),
    ("mail.example.com:25", "scheme must be smtp:// or smtps://"),
    ("", "scheme must be smtp:// or smtps://"),
    ("smtp://", "has no host"),
    ("smtp://:25", "has no host"),
    ("smtp://host:notaport", "not a valid URL"),
    ("smtp://host:70000", "not a valid URL"),
    ("smtp://host:0", "port 0"),
    ("smtp://host:25/inbox", "no path"),
    ("smtp://host:25?tls=true", "unknown option 'tls'"),
    ("smtp://host:25?starttls=maybe", "must be true or false"),
    ("smtps://host?starttls=true", "starttls is for smtp:// only"),
    ("smtp://:secret@host", "a password needs a user"),
])
def test_bad_urls_say_what_to_fix(url: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_smtp_url(url)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ValueError) as exc:
        parse_smtp_url("smtp://user:hunter2@host:25/path")
    assert "hunter2" not in str(exc.value) and "user:***@host" in str(exc.value)


def test_password_is_not_in_repr() -> None:
    assert "hunter2" not in repr(parse_smtp_url("smtp://u:hunter2@h"))


@pytest.mark.parametrize(("url", "shown"), [
    ("smtp://u:p@h:25", "smtp://u:***@h:25"),
    ("smtp://u@h", "smtp://u@h"),
    ("smtp://h:25", "smtp://h:25"),
    ("not a url", "not a url"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
