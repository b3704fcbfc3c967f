"""Grouping, repeat_interval, silences, inhibition and flap damping as pure logic with an injected clock."""

from __future__ import annotations

from analytics.alerting.config import RouteMatch, parse_alerting_config
from analytics.alerting.flapping import Episode, damp
from analytics.alerting.grouping import Aggregator, AlertInstance
from analytics.alerting.inhibition import inhibited
from analytics.alerting.matchers import parse_matcher
from analytics.alerting.payloads import fingerprint
from analytics.alerting.silences import Silence

ROUTE = RouteMatch("route", "team", ("alertname",), group_wait_s=2.0, group_interval_s=10.0, repeat_interval_s=60.0)


def alert(function: str, status: str = "firing", tenant: str = "t1", **extra: str) -> AlertInstance:
    labels = {"alertname": "slow", "function": function, "tenant": tenant, **extra}
    return AlertInstance(fingerprint(labels), labels, status, starts_at=0.0)  # type: ignore[arg-type]


def test_five_functions_within_group_wait_make_one_notice_listing_all() -> None:
    agg = Aggregator()
    for i in range(5):
        agg.put("team", ROUTE, alert(f"fn{i}"), now=0.1 * i)
    assert agg.flush(1.9) == []  # group_wait not over yet
    notices = agg.flush(2.0)
    assert len(notices) == 1
    assert sorted(a.labels["function"] for a in notices[0].alerts) == [f"fn{i}" for i in range(5)]
    assert notices[0].group_labels == {"alertname": "slow", "tenant": "t1"}
    assert agg.flush(3.0) == []  # nothing new: no second notice


def test_tenants_never_share_a_group() -> None:
    agg = Aggregator()
    agg.put("team", ROUTE, alert("fn", tenant="a"), 0)
    agg.put("team", ROUTE, alert("fn", tenant="b"), 0)
    assert sorted(len(n.alerts) for n in agg.flush(5)) == [1, 1]


def test_repeat_interval_renotifies_a_still_firing_group_and_nothing_more_often() -> None:
    agg = Aggregator()
    agg.put("team", ROUTE, alert("fn"), 0)
    sent = [t for t in range(0, 200) if agg.flush(float(t))]
    assert sent == [2, 62, 122, 182]


def test_rule_repeat_override_and_group_interval_for_changes() -> None:
    agg = Aggregator()
    a = alert("fn")
    a.repeat_interval_s = 20.0
    agg.put("team", ROUTE, a, 0)
    assert [n.reason for n in agg.flush(2)] == ["first"]
    agg.put("team", ROUTE, alert("other"), 3)  # a change: waits for group_interval after the last notice
    assert agg.flush(5) == []
    assert [(n.reason, len(n.alerts)) for n in agg.flush(12)] == [("changed", 2)]
    assert [n.reason for n in agg.flush(32)] == ["repeat"]


def test_resolved_is_told_only_after_firing_was_told() -> None:
    agg = Aggregator()
    agg.put("team", ROUTE, alert("fn"), 0)
    agg.flush(2)
    agg.put("team", ROUTE, alert("fn", status="resolved"), 5)
    (notice,) = agg.flush(12)
    assert notice.status == "resolved" and notice.alerts[0].status == "resolved"
    assert agg.groups == {}  # nothing left to tell: the group is gone
    agg.put("team", ROUTE, alert("quick"), 20)
    agg.put("team", ROUTE, alert("quick", status="resolved"), 21)
    assert agg.flush(30) == [] and agg.groups == {}  # fired and resolved inside group_wait: silence


def test_a_silence_mutes_and_its_expiry_unmutes() -> None:
    agg = Aggregator()
    s = Silence("s1", "t1", (parse_matcher('function=~"pay.*"'),), starts_at=0, ends_at=100)
    agg.put("team", ROUTE, alert("payments"), 0)
    agg.put("team", ROUTE, alert("cart"), 0)
    (first,) = agg.flush(2, muted=lambda labels: s.mutes(labels, 2))
    assert [a.labels["function"] for a in first.alerts] == ["cart"]
    assert agg.flush(50, muted=lambda labels: s.mutes(labels, 50)) == []
    (after,) = agg.flush(100, muted=lambda labels: s.mutes(labels, 100))  # expired: the alert is new to the group
    assert sorted(a.labels["function"] for a in after.alerts) == ["cart", "payments"]


def test_a_silence_only_matches_its_tenant() -> None:
    s = Silence("s1", "t1", (parse_matcher('function="pay"'),), starts_at=0, ends_at=100)
    assert s.mutes({"function": "pay", "tenant": "t1"}, 1)
    assert not s.mutes({"function": "pay", "tenant": "t2"}, 1)
    assert s.state(-1) == "pending" and s.state(100) == "expired"


def test_inhibition_mutes_the_target_while_the_source_fires() -> None:
    cfg = parse_alerting_config({"inhibit_rules": [{
        "source_matchers": ['alertname="function-down"'], "target_matchers": ['metric="duration_ms"'],
        "equal": ["function"]}]})
    down = {"alertname": "function-down", "function": "pay", "tenant": "t1"}
    slow = {"alertname": "slow", "function": "pay", "metric": "duration_ms", "tenant": "t1"}
    other = {**slow, "function": "cart"}
    elsewhere = {**slow, "tenant": "t2"}
    rules = cfg.inhibit_rules
    assert inhibited(slow, [down, slow], rules)
    assert not inhibited(other, [down, other], rules)  # equal labels differ
    assert not inhibited(elsewhere, [down, elsewhere], rules)  # another tenant's source
    assert not inhibited(slow, [slow], rules)  # source resolved: the target speaks again


def test_flap_damping_keeps_one_episode() -> None:
    ep = Episode(alert_id=7)
    ep, action = damp(ep, "resolved", now=100, window_s=10)
    assert action == "hold"
    ep, action = damp(ep, "firing", now=105, window_s=10)
    assert (action, ep.alert_id, ep.resolved_at) == ("reopen", 7, None)
    ep, action = damp(ep, "resolved", now=110, window_s=10)
    assert damp(ep, None, now=119, window_s=10)[1] is None
    assert damp(ep, None, now=120, window_s=10)[1] == "close"
    assert damp(ep, "firing", now=125, window_s=10)[1] == "open"
    assert damp(Episode(alert_id=1), "resolved", now=0, window_s=0)[1] == "close"


def test_an_alert_of_a_deleted_rule_is_resolved_once() -> None:
    agg = Aggregator()
    a = alert("fn")
    a.rule_id = 7
    agg.put("team", ROUTE, a, 0)
    assert [n.status for n in agg.flush(2)] == ["firing"]
    assert agg.resolve_unless({7, 8}, 5) == 0
    assert agg.resolve_unless({8}, 6) == 1
    assert [n.status for n in agg.flush(12)] == ["resolved"] and agg.groups == {}
