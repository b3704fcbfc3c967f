"""Acknowledging a firing alert over real HTTP and PostgreSQL: a developer or admin of the alert's tenant
acknowledges it once (who and when show on GET /v1/alerts and in the audit log); another tenant's alert is a 404,
a viewer or invoker gets 403, a resolved alert 409, a malformed id a 4xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ApiServer, deploy

SECRET = "whsec_" + "QUNLLXRlc3Qtc2VjcmV0LTMyLWJ5dGVzLi4uLi4uLi4="
FN = "def handler(event, context):\n    return {'ok': True}\n"


@dataclass
class Teams:
    """Tenant A (a key of every role) and tenant B (a developer), each with a rule and alerts on it."""

    a: str
    b: str
    keys: dict[str, str]
    key_names: dict[str, str]
    alerts: dict[str, int]  # a_firing, a_firing_2, a_resolved, b_firing

    def client(self, server: ApiServer, who: str) -> httpx.Client:
        return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {self.keys[who]}"}, timeout=60)


def _alert(database_url: str, namespace: str, rule_id: int, function: str, state: str) -> int:
    """An alert row as the alert engine records a firing (or resolved) episode; the engine's own tests cover when
    it fires."""
    eng = create_engine(database_url)
    try:
        with eng.begin() as conn:
            return int(conn.execute(text(
                "INSERT INTO alerts (rule_id, namespace, function, state, value, started_at, resolved_at, details)"
                " VALUES (:rule, :ns, :fn, :state, 3, now() - interval '5 minutes',"
                " CASE WHEN :resolved THEN now() END, :details) RETURNING id"),
                {"rule": rule_id, "ns": namespace, "fn": function, "state": state, "resolved": state == "resolved",
                 "details": '{"labels": {"alertname": "ack-rule"}}'}).scalar_one())
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def teams(api_server: ApiServer, admin_key: str, database_url: str) -> Iterator[Teams]:
    suffix = uuid.uuid4().hex[:6]
    a, b = f"ack-a-{suffix}", f"ack-b-{suffix}"
    keys: dict[str, str] = {}
    names: dict[str, str] = {}
    alerts: dict[str, int] = {}
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=60) as op:
        for tenant in (a, b):
            assert op.post("/v1/tenants", json={"name": tenant}).status_code == 201
        for who, tenant, role in [("a_admin", a, "admin"), ("a_developer", a, "developer"),
                                  ("a_invoker", a, "invoker"), ("a_viewer", a, "viewer"),
                                  ("b_developer", b, "developer")]:
            r = op.post("/v1/keys", json={"tenant": tenant, "role": role, "name": f"{who}-{suffix}"})
            assert r.status_code == 201, r.text
            keys[who], names[who] = r.json()["key"], f"{who}-{suffix}"
    world = Teams(a, b, keys, names, alerts)
    for team, tenant in (("a", a), ("b", b)):
        with world.client(api_server, f"{team}_developer") as dev:
            assert deploy(dev, "acked", files={"main.py": FN}).status_code == 201
            r = dev.post("/v1/alert-rules", json={
                "name": "ack-rule", "function": "acked", "kind": "threshold", "metric": "duration_ms",
                "aggregate": "p95", "op": ">", "value": 1e6, "window_s": 60, "for_s": 0,
                "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/", "secret": SECRET}]})
            assert r.status_code == 201, r.text
            rule = int(r.json()["id"])
        alerts[f"{team}_firing"] = _alert(database_url, tenant, rule, "acked", "firing")
        if team == "a":
            alerts["a_firing_2"] = _alert(database_url, tenant, rule, "acked", "firing")
            alerts["a_resolved"] = _alert(database_url, tenant, rule, "acked", "resolved")
    yield world


def _listed(client: httpx.Client, alert_id: int) -> dict[str, object]:
    r = client.get("/v1/alerts")
    assert r.status_code == 200, r.text
    return next(a for a in r.json()["alerts"] if a["id"] == alert_id)


def test_a_developer_acknowledges_a_firing_alert_once_listed_and_audited(api_server: ApiServer, teams: Teams,
                                                                        admin_key: str) -> None:
    alert = teams.alerts["a_firing"]
    with teams.client(api_server, "a_developer") as dev, teams.client(api_server, "a_admin") as adm:
        before = _listed(dev, alert)
        assert before["acknowledged_by"] is None and before["acknowledged_at"] is None
        r = dev.post(f"/v1/alerts/{alert}/ack")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["acknowledged_by"] == teams.key_names["a_developer"] and not body["already_acknowledged"]
        when = datetime.fromisoformat(body["acknowledged_at"])
        listed = _listed(dev, alert)
        assert listed["acknowledged_by"] == teams.key_names["a_developer"] and listed["state"] == "firing"
        assert datetime.fromisoformat(str(listed["acknowledged_at"])) == when
        # a second acknowledgement (here by the tenant's admin) keeps the first one
        again = adm.post(f"/v1/alerts/{alert}/ack")
        assert again.status_code == 200 and again.json()["already_acknowledged"], again.text
        assert again.json()["acknowledged_by"] == teams.key_names["a_developer"]
        # the other firing alert is untouched
        assert _listed(dev, teams.alerts["a_firing_2"])["acknowledged_by"] is None
        entries = adm.get("/v1/audit", params={"limit": 1000}).json()["entries"]
    acks = [e for e in entries if e["operation"] == "alerts.ack"]
    assert [(e["target"], e["actor"]["name"], e["tenant"]) for e in acks] == [
        (f"alert/{alert}", teams.key_names["a_developer"], teams.a)]


def test_an_admin_of_the_tenant_may_acknowledge(api_server: ApiServer, teams: Teams) -> None:
    alert = teams.alerts["a_firing_2"]
    with teams.client(api_server, "a_admin") as adm:
        r = adm.post(f"/v1/alerts/{alert}/ack")
        assert r.status_code == 200 and r.json()["acknowledged_by"] == teams.key_names["a_admin"], r.text
        assert _listed(adm, alert)["acknowledged_by"] == teams.key_names["a_admin"]


def test_another_tenants_alert_is_not_found_and_lesser_roles_are_refused(api_server: ApiServer,
                                                                        teams: Teams) -> None:
    b_alert = teams.alerts["b_firing"]
    with teams.client(api_server, "a_developer") as dev:
        r = dev.post(f"/v1/alerts/{b_alert}/ack")
        missing = dev.post("/v1/alerts/2147483000/ack")
        assert r.status_code == missing.status_code == 404, (r.text, missing.text)
        assert r.json()["error"]["message"] == f"no alert with id {b_alert}"  # nothing said about tenant B
        for bad in ("0", "abc", "99999999999"):
            assert 400 <= dev.post(f"/v1/alerts/{bad}/ack").status_code < 500, bad
        resolved = dev.post(f"/v1/alerts/{teams.alerts['a_resolved']}/ack")
        assert resolved.status_code == 409 and "resolved" in resolved.json()["error"]["message"], resolved.text
    for who in ("a_viewer", "a_invoker"):
        with teams.client(api_server, who) as lesser:
            r = lesser.post(f"/v1/alerts/{teams.alerts['a_firing']}/ack")
            assert r.status_code == 403, (who, r.text)
    with teams.client(api_server, "b_developer") as bdev:
        assert _listed(bdev, b_alert)["acknowledged_by"] is None  # B's alert was never touched
        assert _listed(bdev, b_alert)["acknowledged_at"] is None
