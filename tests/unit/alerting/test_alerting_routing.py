"""Matchers (amtool syntax), durations, the alerting file's models and the routing tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.alerting.config import AlertingConfigError, load_alerting_config, parse_alerting_config, route
from analytics.alerting.durations import parse_duration
from analytics.alerting.matchers import Matcher, parse_matcher, parse_matchers


@pytest.mark.parametrize(("text", "want"), [
    ('function=~"pay.*"', Matcher("function", "pay.*", True, True)),
    ("severity!=info", Matcher("severity", "info", False, False)),
    ('alertname="Function down"', Matcher("alertname", "Function down", False, True)),
    ('team!~"a|b"', Matcher("team", "a|b", True, False)),
    ('msg="say \\"hi\\""', Matcher("msg", 'say "hi"', False, True)),
])
def test_amtool_matchers_parse(text: str, want: Matcher) -> None:
    assert parse_matcher(text) == want
    assert parse_matcher(str(want)) == want  # printing and parsing round-trip


@pytest.mark.parametrize("bad", ["function", "=x", '9x="a"', 'a=~"("', 'a="unbalanced'])
def test_bad_matchers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_matcher(bad)


def test_regex_matchers_are_anchored_and_missing_labels_are_empty() -> None:
    m = parse_matcher('function=~"pay.*"')
    assert m.matches({"function": "payments"}) and not m.matches({"function": "repay"})
    assert parse_matcher("severity!=info").matches({})
    assert parse_matchers(['{a="1", b=~"x,y|z"}']) == [Matcher("a", "1"), Matcher("b", "x,y|z", True)]


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("1h30m", 5400), (2, 2.0), ("1.5", 1.5)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["3 days", "1x", "", -1, True, "400d"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


TREE = {
    "route": {
        "receiver": "default", "group_by": ["alertname"], "group_wait": "2s",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True, "repeat_interval": "1h"},
            {"matchers": ['function=~"pay.*"'], "receiver": "payments", "group_by": ["alertname", "function"]},
            {"matchers": ['function=~"pay.*"'], "receiver": "never"},
        ],
    },
    "receivers": [
        {"name": "default"}, {"name": "pager"}, {"name": "payments"}, {"name": "never"},
    ],
}


def test_routing_tree_first_match_continue_inheritance() -> None:
    cfg = parse_alerting_config(TREE)
    got = route(cfg.route, {"severity": "critical", "function": "payroll", "alertname": "slow"})
    assert [m.receiver for m in got] == ["pager", "payments"]  # continue: on to the next child; no third match
    assert got[0].repeat_interval_s == 3600 and got[0].group_wait_s == 2  # own value, inherited value
    assert got[1].group_by == ("alertname", "function")
    assert [m.receiver for m in route(cfg.route, {"function": "cart"})] == ["default"]
    assert got[1].group_labels({"alertname": "slow", "function": "payroll", "tenant": "t1", "x": "y"}) == {
        "alertname": "slow", "function": "payroll", "tenant": "t1"}


@pytest.mark.parametrize(("data", "needle"), [
    ({"route": {"receiver": "ghost"}, "receivers": [{"name": "a"}]}, "route.receiver: no receiver named 'ghost'"),
    ({"route": {"routes": [{"receiver": "b"}]}, "receivers": [{"name": "a"}]}, "the root route needs a default"),
    ({"route": {"group_wait": "soon"}}, "route.group_wait"),
    ({"route": {"matchers": ["nope"]}}, "route.matchers"),
    ({"receivers": [{"name": "a", "channels": [{"type": "pager"}]}], "route": {"receiver": "a"}}, "receivers.0"),
    ({"inhibit_rules": [{"source_matchers": [], "target_matchers": ['a="b"']}]}, "inhibit_rules.0.source_matchers"),
    ({"routes": []}, "routes: unknown field"),
    ([1, 2], "must be a mapping"),
])
def test_bad_config_names_the_field(data: object, needle: str) -> None:
    with pytest.raises(AlertingConfigError) as exc:
        parse_alerting_config(data)
    assert needle in str(exc.value)


def test_config_file_missing_is_defaults_and_bad_yaml_is_an_error(tmp_path: Path) -> None:
    assert load_alerting_config(tmp_path / "none.yaml").receivers == []
    bad = tmp_path / "alerting.yaml"
    bad.write_text("route: [unclosed\n")
    with pytest.raises(AlertingConfigError, match="not valid YAML"):
        load_alerting_config(bad)


def test_environment_wins_over_the_file_for_channel_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import Settings

    cfg = tmp_path / "alerting.yaml"
    cfg.write_text("channels:\n  smtp_url: smtp://file.example:25\n  smtp_from: file@example.com\n"
                   "  sms_sid: FILE\n")
    monkeypatch.setenv("CLOUDFN_SMTP_URL", "smtp://env.example:2525")
    monkeypatch.delenv("CLOUDFN_SMTP_FROM", raising=False)
    monkeypatch.delenv("CLOUDFN_SMS_SID", raising=False)
    s = Settings(home=tmp_path, alerting_config=cfg)
    assert (s.smtp_url, s.smtp_from, s.sms_sid) == ("smtp://env.example:2525", "file@example.com", "FILE")
    again = Settings(**s.model_dump(mode="json"))  # as a Serve replica rebuilds them
    assert (again.smtp_url, again.sms_sid) == ("smtp://env.example:2525", "FILE")


def test_receivers_with_unconfigured_channels_stop_the_start(tmp_path: Path) -> None:
    from analytics.alerting.channel_config import ChannelSettings
    from analytics.alerting.config import checked_alerting_config
    from core.settings import Settings

    cfg = tmp_path / "alerting.yaml"
    cfg.write_text("route: {receiver: mail}\nreceivers:\n  - name: mail\n    channels: [{type: email, to: a@b.co}]\n")
    s = Settings(home=tmp_path, alerting_config=cfg, smtp_url=None, smtp_from=None)
    with pytest.raises(AlertingConfigError, match="channel email needs CLOUDFN_SMTP_URL"):
        checked_alerting_config(cfg, ChannelSettings.from_settings(s))


def test_the_readme_example_is_a_valid_alerting_file() -> None:
    import yaml

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split("A complete `configs/alerting.yaml`:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    cfg = parse_alerting_config(yaml.safe_load(block))
    assert {r.name for r in cfg.receivers} == {"team", "pager", "payments"}
    assert [m.receiver for m in route(cfg.route, {"severity": "critical", "function": "payroll"})] == [
        "pager", "payments"]
    assert cfg.inhibit_rules[0].equal == ["function"]
    shipped = load_alerting_config(Path(__file__).resolve().parents[3] / "configs" / "alerting.yaml")
    assert shipped.route.group_wait == 0.5 and shipped.receivers == []
