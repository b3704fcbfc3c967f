"""Channel settings from CLOUDFN_* variables, and what a rule's channels still need."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from analytics.alerting.channel_config import ChannelSettings, JsonSms, SmtpConfig, TwilioSms
from core.settings import Settings
from core.smtp_url import SmtpServer

SMTP = {"CLOUDFN_SMTP_URL": "smtp://u:p@mail.example.com:587?starttls=true", "CLOUDFN_SMTP_FROM": "cf@example.com"}
SMS = {"CLOUDFN_SMS_SID": "AC123", "CLOUDFN_SMS_TOKEN": "tok", "CLOUDFN_SMS_FROM": "+15005550006"}
ALL = ("CLOUDFN_SMTP_URL", "CLOUDFN_SMTP_FROM", "CLOUDFN_SMS_PROVIDER", "CLOUDFN_SMS_URL", "CLOUDFN_SMS_SID",
       "CLOUDFN_SMS_TOKEN", "CLOUDFN_SMS_FROM")


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    """Settings() reading exactly these variables from the environment."""
    for name in ALL:
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Settings()


def test_variables_reach_the_channel_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    ch = ChannelSettings.from_settings(settings_from(monkeypatch, {**SMTP, **SMS}))
    assert ch.smtp == SmtpConfig(SmtpServer("mail.example.com", 587, "u", "p", starttls=True), "cf@example.com")
    assert ch.sms == TwilioSms("https://api.twilio.com", "AC123", "tok", "+15005550006")
    assert ch.sms.endpoint == "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
    assert ch.missing == {} and ch.refusal(["email", "sms", "webhook", "slack"]) is None


def test_nothing_set_names_what_each_channel_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    ch = ChannelSettings.from_settings(settings_from(monkeypatch, {}))
    assert ch.smtp is None and ch.sms is None
    assert ch.refusal(["webhook", "slack"]) is None
    why = ch.refusal(["email", "webhook", "email"]) or ""
    assert why.startswith("channel email needs CLOUDFN_SMTP_URL, CLOUDFN_SMTP_FROM") and "sms" not in why
    assert "channel sms needs CLOUDFN_SMS_SID, CLOUDFN_SMS_TOKEN, CLOUDFN_SMS_FROM" in (ch.refusal(["sms"]) or "")


def test_partial_settings_name_only_the_missing_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"CLOUDFN_SMTP_URL": "smtp://localhost:25", "CLOUDFN_SMS_SID": "AC1", "CLOUDFN_SMS_FROM": "+15005550006"}
    ch = ChannelSettings.from_settings(settings_from(monkeypatch, env))
    assert ch.missing == {"email": ("CLOUDFN_SMTP_FROM",), "sms": ("CLOUDFN_SMS_TOKEN",)}


def test_blank_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    ch = ChannelSettings.from_settings(settings_from(monkeypatch, {"CLOUDFN_SMTP_URL": " ", "CLOUDFN_SMTP_FROM": ""}))
    assert ch.missing["email"] == ("CLOUDFN_SMTP_URL", "CLOUDFN_SMTP_FROM")


def test_sms_url_points_at_a_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_from(monkeypatch, {**SMS, "CLOUDFN_SMS_URL": "http://127.0.0.1:9999/"})
    sms = ChannelSettings.from_settings(s).sms
    assert isinstance(sms, TwilioSms)
    assert sms.endpoint == "http://127.0.0.1:9999/2010-04-01/Accounts/AC123/Messages.json"


def test_generic_json_provider_is_still_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"CLOUDFN_SMS_PROVIDER": "json", "CLOUDFN_SMS_URL": "https://sms.example.com/send", "CLOUDFN_SMS_TOKEN": "t"}
    assert ChannelSettings.from_settings(settings_from(monkeypatch, env)).sms == JsonSms(
        "https://sms.example.com/send", "t")
    ch = ChannelSettings.from_settings(settings_from(monkeypatch, {"CLOUDFN_SMS_PROVIDER": "json"}))
    assert "CLOUDFN_SMS_URL" in (ch.refusal(["sms"]) or "")


@pytest.mark.parametrize(("env", "needle"), [
    ({"CLOUDFN_SMTP_URL": "http://mail.example.com"}, "CLOUDFN_SMTP_URL: 'http://mail.example.com': the scheme"),
    ({"CLOUDFN_SMTP_URL": "smtp://u:hunter2@h:25?tls=1"}, "unknown option 'tls'"),
    ({"CLOUDFN_SMTP_FROM": "not-an-address"}, "CLOUDFN_SMTP_FROM: 'not-an-address' is not an address"),
    ({"CLOUDFN_SMS_URL": "api.twilio.com"}, "CLOUDFN_SMS_URL: 'api.twilio.com' is not an http(s) URL"),
    ({"CLOUDFN_SMS_PROVIDER": "sns"}, "sms_provider"),
])
def test_bad_settings_are_refused_at_start(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str) -> None:
    with pytest.raises(ValidationError) as exc:
        settings_from(monkeypatch, env)
    assert needle in str(exc.value) and "hunter2" not in str(exc.value)


def test_secrets_stay_out_of_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings_from(monkeypatch, {**SMS, "CLOUDFN_SMTP_URL": "smtp://u:hunter2@h", "CLOUDFN_SMS_TOKEN": "tok42"})
    assert "hunter2" not in repr(s) and "tok42" not in repr(s)
    assert "tok42" not in repr(ChannelSettings.from_settings(s))
