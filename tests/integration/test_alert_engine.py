"""The alert engine and the outbox worker on a real PostgreSQL (a database of their own, so the session
platform's dispatcher never sees these rules), real HTTP and SMTP receivers, and an injected clock.

Rules are anomaly rules fed by anomaly rows written here: what fires is under the test's control.
"""

from __future__ import annotations

import base64
import email
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from actors.alerts import AlertEngine, _notifier
from actors.outbox_worker import OutboxWorker
from analytics.alerting.channel_config import ChannelSettings, SmtpConfig
from analytics.alerting.config import AlertingConfig, parse_alerting_config
from analytics.alerting.rules import parse_rule
from core.db.engine import normalise_url
from core.db.migrate import upgrade
from core.db.outbox import claim_due
from core.db.tables import AlertDelivery, AlertNotification, AlertRule, AlertSilence, Anomaly
from core.smtp_url import parse_smtp_url
from tests.receivers import SlackStandIn, WebhookSink

SECRET = "whsec_" + base64.b64encode(b"engine-test-secret").decode()
T0 = time.time() - 3600  # the injected clock runs an hour behind: every notice is due for the worker at once


@pytest.fixture(scope="module")
def alert_db(database_url: str) -> Iterator[str]:
    """A freshly migrated database on the session's PostgreSQL server."""
    name = f"alerts_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(database_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except ProgrammingError as exc:  # make test-external-pg: a role without CREATEDB, as production gives
        admin.dispose()
        pytest.skip(f"needs a database of its own, which this role may not create ({exc.orig}); "
                    "make test runs it on the embedded server")
    url = make_url(normalise_url(database_url)).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(autouse=True)
def empty(alert_db: str) -> None:
    """Each test starts with no rules, alerts, notices, silences or anomalies (the database is this module's)."""
    eng = create_engine(normalise_url(alert_db))
    with eng.begin() as c:
        c.execute(text("TRUNCATE alert_deliveries, alert_notifications, alerts, alert_rules, alert_silences,"
                       " anomalies CASCADE"))
    eng.dispose()


@pytest.fixture()
def hook() -> Iterator[WebhookSink]:
    sink = WebhookSink(SECRET)
    yield sink
    sink.close()


@pytest.fixture()
def tenant() -> str:
    """A namespace of this test alone (rules of earlier tests stay in the database, in other namespaces)."""
    return f"t{uuid.uuid4().hex[:8]}"


class World:
    """One engine and one worker over the test database, plus helpers to write rules and anomalies."""

    def __init__(self, url: str, tmp: Path, config: AlertingConfig, channels: ChannelSettings) -> None:
        self.url = url
        self.engine = AlertEngine(url, str(tmp / "lake"), "http://cloudfn.test", config=config)
        self.db = self.engine.engine
        self.worker = OutboxWorker(self.db, _notifier(channels), backoff_s=0.05)
        self.worker_started = False

    def rule(self, tenant: str, **spec: Any) -> int:
        parsed = parse_rule(spec)
        with self.db.begin() as c:
            return int(c.execute(insert(AlertRule).values(
                namespace=tenant, name=parsed.name, function=parsed.function,
                spec=parsed.model_dump(mode="json", exclude_none=True), state={}).returning(AlertRule.id)).scalar_one())

    def anomaly(self, tenant: str, function: str, at: float, kind: str = "latency",
                metric: str = "duration_ms") -> None:
        with self.db.begin() as c:
            c.execute(insert(Anomaly).values(
                namespace=tenant, function=function, version=3, kind=kind, metric=metric, observed=900.0,
                expected_low=1.0, expected_high=20.0, score=0.97, task_id=None, detector="test", details={},
                detected_at=datetime.fromtimestamp(at, UTC)))

    def silence(self, tenant: str, matchers: list[dict[str, Any]], starts: float, ends: float) -> str:
        sid = str(uuid.uuid4())
        with self.db.begin() as c:
            c.execute(insert(AlertSilence).values(
                id=sid, namespace=tenant, matchers=matchers, starts_at=datetime.fromtimestamp(starts, UTC),
                ends_at=datetime.fromtimestamp(ends, UTC), created_by="test", comment="test"))
        return sid

    def tick(self, at: float) -> None:
        self.engine.tick(at)

    def deliver(self) -> int:
        """Send everything due, synchronously."""
        return self.worker.run_once(wait=True)

    def notices(self, tenant: str) -> list[Any]:
        with self.db.connect() as c:
            return list(c.execute(select(AlertNotification).where(AlertNotification.namespace == tenant)
                                  .order_by(AlertNotification.id)).all())


@pytest.fixture()
def world(alert_db: str, tmp_path: Path) -> Iterator[World]:
    w = World(alert_db, tmp_path, AlertingConfig(), ChannelSettings())
    yield w
    w.worker.stop()
    w.db.dispose()


def make_world(alert_db: str, tmp_path: Path, config: dict[str, Any],
               channels: ChannelSettings | None = None) -> World:
    return World(alert_db, tmp_path, parse_alerting_config(config), channels or ChannelSettings())


def anomaly_rule(name: str, function: str, channels: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {"name": name, "function": function, "kind": "anomaly", "channels": channels, **more}


def fire(w: World, tenant: str, functions: list[str], at: float, **anomaly: Any) -> None:
    """Anomalies for these functions just after `at`, then one evaluation that sees them."""
    for fn in functions:
        w.anomaly(tenant, fn, at + 0.5, **anomaly)
    w.tick(at + 1)


def test_five_functions_breaching_one_rule_within_group_wait_make_one_signed_notice(
        alert_db: str, tmp_path: Path, hook: WebhookSink, tenant: str) -> None:
    w = make_world(alert_db, tmp_path, {"route": {"group_wait": "5s", "group_by": ["alertname"]}})
    fns = [f"fn-{i}" for i in range(5)]
    for fn in fns:
        w.rule(tenant, **anomaly_rule("slow-fns", fn, [{"type": "webhook", "url": hook.url, "secret": SECRET}]))
    w.tick(T0)  # rules start normal
    fire(w, tenant, fns[:3], T0)
    fire(w, tenant, fns[3:], T0 + 2)  # still inside group_wait: the same group
    w.tick(T0 + 4)
    assert w.notices(tenant) == []  # group_wait not over
    w.tick(T0 + 6.5)
    assert w.deliver() == 1
    assert len(hook.processed) == 1 and hook.rejected == 0  # signature verified by standardwebhooks
    (body,) = hook.processed.values()
    assert sorted(a["labels"]["function"] for a in body["alerts"]) == fns
    assert body["status"] == "firing" and body["groupLabels"] == {"alertname": "slow-fns", "tenant": tenant}
    labels = body["alerts"][0]["labels"]
    assert {k: labels[k] for k in ("kind", "metric", "severity", "tenant", "version")} == {
        "kind": "anomaly", "metric": "duration_ms", "severity": "warning", "tenant": tenant, "version": "3"}
    w.tick(T0 + 20)
    assert len(w.notices(tenant)) == 1  # nothing changed: nothing more


def test_repeat_interval_renotifies_and_nothing_more_often(alert_db: str, tmp_path: Path, hook: WebhookSink,
                                                           tenant: str) -> None:
    w = make_world(alert_db, tmp_path, {"route": {"group_wait": "0s", "group_interval": "5s"}})
    w.rule(tenant, **anomaly_rule("rep", "rep-fn", [{"type": "webhook", "url": hook.url, "secret": SECRET}],
                                  repeat_interval_s=30))
    w.tick(T0)
    fire(w, tenant, ["rep-fn"], T0)
    for k in range(2, 100):  # still firing: anomalies keep coming every 10 s
        if k % 10 == 0:
            w.anomaly(tenant, "rep-fn", T0 + k - 0.5)
        w.tick(T0 + k)
    sent = [n.created_at.timestamp() - T0 for n in w.notices(tenant)]
    assert len(sent) == 4, sent  # at 1 s, then every 30 s: 31, 61, 91
    assert all(b - a >= 30 for a, b in zip(sent, sent[1:], strict=False))
    assert w.deliver() == 4 and len(hook.processed) == 4


def test_a_silence_mutes_only_its_tenant_and_its_expiry_unmutes(alert_db: str, tmp_path: Path, hook: WebhookSink,
                                                                tenant: str) -> None:
    other = f"o{tenant}"
    w = make_world(alert_db, tmp_path, {"route": {"group_wait": "0s", "group_interval": "1s"}})
    for ns in (tenant, other):
        w.rule(ns, **anomaly_rule("pay-slow", "payments", [{"type": "webhook", "url": hook.url, "secret": SECRET}]))
    w.silence(tenant, [{"name": "function", "value": "pay.*", "isRegex": True, "isEqual": True}], T0, T0 + 30)
    w.tick(T0)
    fire(w, tenant, ["payments"], T0)
    fire(w, other, ["payments"], T0)
    for k in range(2, 29):
        w.tick(T0 + k)
    assert w.notices(tenant) == []  # muted while the silence is active
    assert len(w.notices(other)) == 1  # another tenant's alert is not touched by it
    w.tick(T0 + 31)
    (after,) = w.notices(tenant)
    assert after.status == "firing" and after.payload["alerts"][0]["labels"]["function"] == "payments"


def test_inhibition_mutes_latency_while_function_down_fires(alert_db: str, tmp_path: Path, hook: WebhookSink,
                                                            tenant: str) -> None:
    w = make_world(alert_db, tmp_path, {
        "route": {"group_wait": "0s", "group_interval": "1s", "group_by": ["alertname", "function"]},
        "inhibit_rules": [{"source_matchers": ['alertname="function-down"'],
                           "target_matchers": ['metric="duration_ms"'], "equal": ["function"]}],
        "flap_window": "0s"})
    ch = [{"type": "webhook", "url": hook.url, "secret": SECRET}]
    w.rule(tenant, **anomaly_rule("function-down", "pay", ch, anomaly_kinds=["errors"]))
    w.rule(tenant, **anomaly_rule("latency", "pay", ch, anomaly_kinds=["latency"]))
    w.rule(tenant, **anomaly_rule("latency", "cart", ch, anomaly_kinds=["latency"]))
    w.tick(T0)
    w.anomaly(tenant, "pay", T0 + 0.5, kind="errors", metric="error_rate")
    fire(w, tenant, ["pay", "cart"], T0)
    w.tick(T0 + 2)
    told = {(n.payload["alerts"][0]["labels"]["alertname"], n.payload["alerts"][0]["labels"]["function"])
            for n in w.notices(tenant)}
    assert told == {("function-down", "pay"), ("latency", "cart")}  # pay's latency muted; cart's is not


def test_a_crash_between_commit_and_send_delivers_once_to_a_deduplicating_receiver(
        alert_db: str, tmp_path: Path, hook: WebhookSink, tenant: str) -> None:
    w = make_world(alert_db, tmp_path, {"route": {"group_wait": "0s"}})
    plain = SlackStandIn()
    try:
        w.rule(tenant, **anomaly_rule("crash", "crash-fn", [{"type": "webhook", "url": hook.url, "secret": SECRET},
                                                            {"type": "slack", "webhook_url": plain.url}]))
        w.tick(T0)
        fire(w, tenant, ["crash-fn"], T0)
        assert len(w.notices(tenant)) == 2  # committed, one row per channel, nothing sent yet
        # a worker claims the rows and dies before sending (its lease would keep them for a minute)
        assert len(claim_due(w.db, time.time(), lease_s=60)) == 2
        assert w.deliver() == 0
        # and a first worker that did send, but died before recording the acknowledgement: simulate by sending
        # the webhook row's copy once by hand through the same transport
        row = next(n for n in w.notices(tenant) if n.channel["type"] == "webhook")
        from analytics.alerting.group_message import GroupMessage
        from analytics.alerting.rules import WebhookChannel

        assert w.worker.notifier.send_once(WebhookChannel.model_validate(row.channel),
                                           GroupMessage(row.dedup_id, row.payload)).ok
        restarted = OutboxWorker(w.db, w.worker.notifier)
        restarted.start()  # voids the dead worker's claims
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and restarted.sent < 2:
                time.sleep(0.05)
        finally:
            restarted.stop()
        assert restarted.sent == 2
        assert len(hook.received) == 2 and len(hook.processed) == 1  # two copies, one webhook-id: processed once
        assert len(plain.messages) == 1  # the plain receiver got it (at least once)
        meta = plain.messages[0]["body"]["metadata"]
        assert meta["event_payload"]["notification_id"] == next(
            n.dedup_id for n in w.notices(tenant) if n.channel["type"] == "slack")
        assert {n.state for n in w.notices(tenant)} == {"delivered"}
    finally:
        plain.close()


def test_failed_attempts_are_recorded_and_retried_with_the_same_id(alert_db: str, tmp_path: Path,
                                                                   tenant: str, mail_sink: Any) -> None:
    smtp = SmtpConfig(parse_smtp_url(mail_sink.url), "CloudFn <alerts@cloudfn.test>")
    w = make_world(alert_db, tmp_path, {"route": {"group_wait": "0s"}}, ChannelSettings(smtp=smtp))
    w.rule(tenant, **anomaly_rule("mailed", "mail-fn", [{"type": "email", "to": f"{tenant}@example.com"}]))
    w.tick(T0)
    fire(w, tenant, ["mail-fn"], T0)
    mail_sink.fail_first = 2
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and w.notices(tenant)[0].state != "delivered":
        w.deliver()
        time.sleep(0.05)
    (notice,) = w.notices(tenant)
    assert notice.state == "delivered" and notice.attempts == 3
    with w.db.connect() as c:
        attempts = list(c.execute(select(AlertDelivery.status).where(AlertDelivery.notification_id == notice.id)
                                  .order_by(AlertDelivery.attempt)).scalars())
    assert attempts == ["failed", "failed", "delivered"]
    mails = [m for m in mail_sink.messages if m["to"] == [f"{tenant}@example.com"]]
    assert len(mails) == 1
    parsed = email.message_from_bytes(mails[0]["content"])
    assert parsed["Message-ID"] == f"<{notice.dedup_id}@cloudfn>"
    assert parsed["Subject"].startswith("[FIRING] mailed on mail-fn")


def test_rules_without_channels_follow_the_routing_tree(alert_db: str, tmp_path: Path, tenant: str) -> None:
    sinks = {name: WebhookSink(SECRET) for name in ("ops", "pager", "team")}
    try:
        w = make_world(alert_db, tmp_path, {
            "route": {"receiver": "ops", "group_wait": "0s", "routes": [
                {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
                {"matchers": ['function=~"api|web"'], "receiver": "team"}]},
            "receivers": [{"name": n, "channels": [{"type": "webhook", "url": s.url, "secret": SECRET}]}
                          for n, s in sinks.items()]})
        w.rule(tenant, name="down", function="api", kind="anomaly", labels={"severity": "critical"})
        w.rule(tenant, name="slowish", function="api", kind="anomaly")
        w.rule(tenant, name="late", function="batch", kind="anomaly")
        w.tick(T0)
        fire(w, tenant, ["api", "batch"], T0)
        assert w.deliver() == 4
        told = {n: sorted(a["labels"]["alertname"] for b in s.processed.values() for a in b["alerts"])
                for n, s in sinks.items()}
        # critical: pager, and `continue` goes on to the next matching child; no child matches batch: the default
        assert told == {"pager": ["down"], "team": ["down", "slowish"], "ops": ["late"]}
        assert {b["receiver"] for b in sinks["team"].processed.values()} == {"team"}
    finally:
        for s in sinks.values():
            s.close()


def test_a_restarted_engine_does_not_notify_again_what_it_already_stored(alert_db: str, tmp_path: Path,
                                                                          hook: WebhookSink, tenant: str) -> None:
    w = make_world(alert_db, tmp_path, {"route": {"group_wait": "0s"}})
    w.rule(tenant, **anomaly_rule("once", "once-fn", [{"type": "webhook", "url": hook.url, "secret": SECRET}]))
    w.tick(T0)
    fire(w, tenant, ["once-fn"], T0)
    assert len(w.notices(tenant)) == 1
    again = make_world(alert_db, tmp_path, {"route": {"group_wait": "0s"}})  # a new process: empty groups
    for k in range(2, 8):
        again.tick(T0 + k)
    assert len(w.notices(tenant)) == 1  # still firing, already told: seeded from the outbox, nothing new
    again.db.dispose()
