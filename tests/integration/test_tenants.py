"""Tenants, keys and roles over real HTTP: one tenant's keys cannot read, invoke, change or learn of another's
objects; each role is refused what is above it; revoked, expired and rotated-away keys are refused; every
change lands in the audit log."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from serve_app.platform import KEY_CACHE_S
from tests.conftest import ApiServer, deploy

FN = "def handler(event, context):\n    return {'echo': event}\n"


def as_key(server: ApiServer, key: str) -> httpx.Client:
    """An HTTP client sending this key."""
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def make_key(op: httpx.Client, tenant: str, role: str, name: str, **extra: Any) -> dict[str, Any]:
    r = op.post("/v1/keys", json={"tenant": tenant, "role": role, "name": name, **extra})
    assert r.status_code == 201, r.text
    body = dict(r.json())
    assert body["key"].startswith("cfk_") and body["role"] == role and body["tenant"] == tenant
    return body


@dataclass
class World:
    """Two tenants, A with one key of every role and B with a developer key and some objects."""

    a: str
    b: str
    keys: dict[str, dict[str, Any]]
    b_task: str
    b_rule: int
    b_anomaly: int
    b_silence: str

    def client(self, server: ApiServer, who: str) -> httpx.Client:
        return as_key(server, self.keys[who]["key"])


@pytest.fixture(scope="module")
def operator(api_server: ApiServer, admin_key: str) -> Iterator[httpx.Client]:
    with as_key(api_server, admin_key) as c:
        yield c


@pytest.fixture(scope="module")
def world(api_server: ApiServer, operator: httpx.Client, database_url: str) -> World:
    suffix = uuid.uuid4().hex[:6]
    a, b = f"team-a-{suffix}", f"team-b-{suffix}"
    for t in (a, b):
        r = operator.post("/v1/tenants", json={"name": t})
        assert r.status_code == 201 and r.json()["name"] == t, r.text
    keys = {f"a_{role}": make_key(operator, a, role, f"a-{role}") for role in ("admin", "developer", "invoker",
                                                                                "viewer")}
    keys["b_developer"] = make_key(operator, b, "developer", "b-dev")
    keys["b_admin"] = make_key(operator, b, "admin", "b-admin")
    with as_key(api_server, keys["b_developer"]["key"]) as bdev:
        assert deploy(bdev, "bfn", files={"main.py": FN}).status_code == 201
        r = bdev.post("/v1/functions/bfn/invocations", params={"wait": 60}, json={"x": 1})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        task = r.json()["task_id"]
        assert bdev.post("/v1/pipelines", json={"name": "bpipe", "steps": [{"function": "bfn"}]}).status_code == 201
        r = bdev.post("/v1/alert-rules", json={"name": "b-rule", "function": "bfn", "kind": "threshold",
                                               "metric": "duration_ms", "aggregate": "p95", "op": ">", "value": 1e6,
                                               "window_s": 60, "for_s": 0,
                                               "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/",
                                                             "secret": "s"}]})
        assert r.status_code == 201, r.text
        rule = int(r.json()["id"])
        now = datetime.now(UTC)
        r = bdev.post("/v1/silences", json={
            "matchers": [{"name": "function", "value": "bfn", "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(), "createdBy": "b",
            "comment": "maintenance"})
        assert r.status_code == 200, r.text
        silence = r.json()["silenceID"]
    eng = create_engine(database_url)
    with eng.begin() as conn:  # an anomaly of B's function, as the detector would record it
        anomaly = int(conn.execute(text(
            "INSERT INTO anomalies (namespace, function, version, kind, metric, observed, expected_low,"
            " expected_high, score, task_id, detector, details) VALUES (:ns, 'bfn', 1, 'outlier', 'duration_ms',"
            " 900, 1, 10, 0.99, :t, 'test', '{}') RETURNING id"), {"ns": b, "t": task}).scalar_one())
    eng.dispose()
    return World(a, b, keys, task, rule, anomaly, silence)


def hidden(found: httpx.Response, missing: httpx.Response, ident: str, missing_ident: str) -> None:
    """B's object answers exactly as a nonexistent one does: 404 and the same message but for the name."""
    assert found.status_code == 404, (found.request.url, found.status_code, found.text)
    assert missing.status_code == 404, (missing.request.url, missing.status_code, missing.text)
    assert found.json()["error"]["message"].replace(ident, "X") == \
        missing.json()["error"]["message"].replace(missing_ident, "X"), (found.text, missing.text)


def test_a_developer_of_tenant_a_cannot_read_invoke_change_or_see_tenant_b(api_server: ApiServer,
                                                                            world: World) -> None:
    nope_task = str(uuid.uuid4())
    with world.client(api_server, "a_developer") as dev:
        per_function = [
            ("GET", "/v1/functions/{}", None), ("GET", "/v1/functions/{}/versions", None),
            ("GET", "/v1/functions/{}/env", None), ("GET", "/v1/functions/{}/metrics", None),
            ("GET", "/v1/functions/{}/timeseries", None), ("POST", "/v1/functions/{}/activate", None),
            ("POST", "/v1/functions/{}/deactivate", None), ("POST", "/v1/functions/{}/rollback", None),
            ("PUT", "/v1/functions/{}/env", {"K": "v"}), ("DELETE", "/v1/functions/{}", None),
            ("POST", "/v1/functions/{}/invocations", {"x": 1}),  # the pure-ASGI fast path
            ("POST", "/v1/functions/{}/invocations?wait=30", {"x": 1}),
            ("POST", "/v1/functions/{}/invocations?then=bfn", {"x": 1}),  # the FastAPI route
            ("GET", "/v1/pipelines/{}", None), ("POST", "/v1/pipelines/{}/invocations", {}),
        ]
        for method, path, body in per_function:
            name = "bpipe" if "pipelines" in path else "bfn"
            found = dev.request(method, path.format(name), json=body)
            missing = dev.request(method, path.format("no-such-fn"), json=body)
            hidden(found, missing, name, "no-such-fn")
        for method, path in [("GET", "/v1/tasks/{}"), ("GET", "/v1/tasks/{}/logs"), ("POST", "/v1/tasks/{}/cancel"),
                             ("POST", "/v1/tasks/{}/resume"), ("POST", "/v1/dead-letters/{}/redrive")]:
            hidden(dev.request(method, path.format(world.b_task)), dev.request(method, path.format(nope_task)),
                   world.b_task, nope_task)
        hidden(dev.delete(f"/v1/alert-rules/{world.b_rule}"), dev.delete("/v1/alert-rules/999999"),
               str(world.b_rule), "999999")
        hidden(dev.post(f"/v1/anomalies/{world.b_anomaly}/feedback", json={"verdict": "confirmed"}),
               dev.post("/v1/anomalies/999999999/feedback", json={"verdict": "confirmed"}),
               str(world.b_anomaly), "999999999")
        nope_silence = str(uuid.uuid4())
        hidden(dev.delete(f"/v1/silences/{world.b_silence}"), dev.delete(f"/v1/silences/{nope_silence}"),
               world.b_silence, nope_silence)
        assert world.b_silence not in [x["id"] for x in dev.get("/v1/silences").json()]
        r = dev.post("/v1/pipelines", json={"name": "steal", "steps": [{"function": "bfn"}]})
        assert r.status_code == 404, r.text
        # listings show nothing of B
        assert "bfn" not in [f["name"] for f in dev.get("/v1/functions").json()["functions"]]
        assert world.b_task not in [t["task_id"] for t in dev.get("/v1/tasks", params={"limit": 1000}).json()["tasks"]]
        assert dev.get("/v1/tasks", params={"function": "bfn"}).json()["tasks"] == []
        assert dev.get("/v1/anomalies", params={"function": "bfn"}).json()["anomalies"] == []
        assert world.b_rule not in [r["id"] for r in dev.get("/v1/alert-rules").json()["rules"]]
        assert dev.get("/v1/alerts").status_code == 200
        assert dev.get("/v1/dead-letters", params={"function": "bfn"}).json()["dead_letters"] == []
        assert "bfn" not in dev.get("/v1/metrics").json()["functions"]
        # /metrics: only A's own series (B's function ran, so B has series)
        fams = text_string_to_metric_families(dev.get("/metrics").text)
        tenants = {s.labels.get("tenant") for f in fams for s in f.samples}
        assert world.b not in tenants and tenants <= {world.a}
        # the same name in A is A's own function, not B's
        assert deploy(dev, "bfn", files={"main.py": FN}).json()["version"] == 1
        assert dev.delete("/v1/functions/bfn").status_code == 204
    with world.client(api_server, "b_developer") as bdev:  # B's objects are untouched
        fn = bdev.get("/v1/functions/bfn").json()
        assert fn["state"] == "active" and fn["active_version"] == 1 and fn["config"]["env"] == {}
        assert bdev.get(f"/v1/tasks/{world.b_task}").json()["status"] == "succeeded"
        assert world.b_rule in [r["id"] for r in bdev.get("/v1/alert-rules").json()["rules"]]
        assert next(x for x in bdev.get("/v1/silences").json() if x["id"] == world.b_silence)["status"]["state"] \
            == "active"
        assert bdev.get("/v1/anomalies", params={"function": "bfn"}).json()["anomalies"][0]["feedback"] is None
        fams = text_string_to_metric_families(bdev.get("/metrics").text)
        assert {s.labels.get("tenant") for f in fams for s in f.samples} == {world.b}
        # its own function's figures in the every-function answer once its run is in the lake or pending
        deadline = time.monotonic() + 30
        while "bfn" not in (every := bdev.get("/v1/metrics").json()["functions"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert every["bfn"]["count"] >= 1


def test_a_tenant_admin_manages_only_its_own_keys(api_server: ApiServer, world: World) -> None:
    b_key = world.keys["b_developer"]["id"]
    with world.client(api_server, "a_admin") as adm:
        listed = adm.get("/v1/keys").json()["keys"]
        assert {k["tenant"] for k in listed} == {world.a} and "key" not in listed[0]
        assert adm.get("/v1/keys", params={"tenant": world.b}).status_code == 404
        assert adm.delete(f"/v1/keys/{b_key}").status_code == 404
        assert adm.post(f"/v1/keys/{b_key}/rotate").status_code == 404
        r = adm.post("/v1/keys", json={"tenant": world.b, "role": "admin", "name": "sneak"})
        assert r.status_code == 404 and world.b in r.json()["error"]["message"]
        assert adm.get("/v1/audit", params={"tenant": world.b}).status_code == 404
        assert {e["tenant"] for e in adm.get("/v1/audit").json()["entries"]} == {world.a}
        assert [t["name"] for t in adm.get("/v1/tenants").json()["tenants"]] == [world.a]
        r = adm.post("/v1/tenants", json={"name": "mine"})
        assert r.status_code == 403 and "default" in r.json()["error"]["message"]
        own = make_key(adm, world.a, "viewer", "made-by-a-admin")  # its own tenant: allowed
        assert adm.delete(f"/v1/keys/{own['id']}").json()["revoked_at"] is not None
        r = adm.delete(f"/v1/keys/{world.keys['a_admin']['id']}")
        assert r.status_code == 409 and "rotate" in r.json()["error"]["message"]
    with world.client(api_server, "b_developer") as bdev:
        assert bdev.get("/v1/functions").status_code == 200  # still valid


def test_each_role_is_refused_what_is_above_it(api_server: ApiServer, world: World) -> None:
    with world.client(api_server, "a_developer") as dev:
        assert deploy(dev, "afn", files={"main.py": FN}).status_code == 201
        task = dev.post("/v1/functions/afn/invocations", params={"wait": 60}, json={}).json()["task_id"]
    with world.client(api_server, "a_viewer") as viewer:
        r = deploy(viewer, "afn", files={"main.py": FN})
        assert r.status_code == 403 and "developer" in r.json()["error"]["message"]
        assert r.json()["error"]["role_needed"] == "developer"
        for params in ({}, {"wait": 5}, {"then": "afn"}):  # fast path and FastAPI route
            r = viewer.post("/v1/functions/afn/invocations", params=params, json={})
            assert r.status_code == 403 and "invoker" in r.json()["error"]["message"], (params, r.text)
        assert viewer.post("/v1/functions/afn/deactivate").status_code == 403
        assert viewer.delete("/v1/functions/afn").status_code == 403
        assert viewer.get(f"/v1/tasks/{task}").status_code == 403  # results are for invokers
        assert viewer.get("/v1/functions/afn").json()["name"] == "afn"  # reading is allowed
        assert viewer.get("/v1/functions/afn/metrics").status_code == 200
        assert viewer.get("/v1/anomalies").status_code == 200
        assert viewer.get("/v1/silences").status_code == 200
        r = viewer.post("/v1/silences", json={})
        assert r.status_code == 403 and "developer" in r.json()["error"]["message"]
    with world.client(api_server, "a_invoker") as inv:
        r = deploy(inv, "afn", files={"main.py": FN})
        assert r.status_code == 403 and "developer" in r.json()["error"]["message"]
        r = inv.post("/v1/functions/afn/invocations", params={"wait": 60}, json={"n": 2})
        assert r.status_code == 200 and r.json()["output"] == {"echo": {"n": 2}}
        assert inv.get(f"/v1/tasks/{task}").json()["status"] == "succeeded"
        assert inv.get(f"/v1/tasks/{task}/logs").status_code == 200
        assert inv.put("/v1/functions/afn/env", json={"K": "v"}).status_code == 403
        assert inv.post("/v1/pipelines", json={"name": "p", "steps": ["afn"]}).status_code == 403
    with world.client(api_server, "a_developer") as dev:
        for method, path, body in [("POST", "/v1/keys", {"role": "viewer", "name": "x"}), ("GET", "/v1/keys", None),
                                   ("GET", "/v1/audit", None), ("POST", "/v1/tenants", {"name": "x"})]:
            r = dev.request(method, path, json=body)
            assert r.status_code == 403 and "admin" in r.json()["error"]["message"], (path, r.text)
        assert dev.post("/v1/functions/afn/deactivate").json()["state"] == "inactive"
        assert dev.post("/v1/functions/afn/activate").json()["state"] == "active"


def test_revoked_expired_and_rotated_keys_are_refused(api_server: ApiServer, operator: httpx.Client,
                                                      world: World, database_url: str) -> None:
    revoked = make_key(operator, world.a, "viewer", "to-revoke")
    with as_key(api_server, revoked["key"]) as c:
        assert c.get("/v1/functions").status_code == 200  # now cached by the replica
        assert operator.delete(f"/v1/keys/{revoked['id']}").status_code == 200
        r = c.get("/v1/functions")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert c.post("/v1/functions/afn/invocations", json={}).status_code == 401  # the fast path too

    # revoked elsewhere (straight in the database, as another replica would): refused once the cache lapses
    other = make_key(operator, world.a, "viewer", "revoked-elsewhere")
    with as_key(api_server, other["key"]) as c:
        assert c.get("/v1/functions").status_code == 200
        eng = create_engine(database_url)
        with eng.begin() as conn:
            conn.execute(text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"), {"id": other["id"]})
        eng.dispose()
        deadline = time.monotonic() + KEY_CACHE_S + 2.0
        while c.get("/v1/functions").status_code == 200:
            assert time.monotonic() < deadline, "a key revoked in the database was still accepted"
            time.sleep(0.2)
        assert c.get("/v1/functions").status_code == 401

    soon = datetime.now(UTC) + timedelta(seconds=2)
    expiring = make_key(operator, world.a, "invoker", "short-lived", expires_at=soon.isoformat())
    assert expiring["expires_at"] is not None
    with as_key(api_server, expiring["key"]) as c:
        assert c.get("/v1/functions").status_code == 200
        while datetime.now(UTC) <= soon:
            time.sleep(0.2)
        r = c.get("/v1/functions")
        assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
        assert c.post("/v1/functions/afn/invocations", json={}).status_code == 401
    r = operator.post(f"/v1/keys/{expiring['id']}/rotate")
    assert r.status_code == 409 and "expired" in r.json()["error"]["message"]

    old = make_key(operator, world.a, "developer", "rotating")
    with world.client(api_server, "a_admin") as adm:
        r = adm.post(f"/v1/keys/{old['id']}/rotate")
        assert r.status_code == 201, r.text
        new = r.json()
    assert new["key"] != old["key"] and new["id"] != old["id"] and new["replaces"] == old["id"]
    assert (new["tenant"], new["role"], new["name"]) == (world.a, "developer", "rotating")
    with as_key(api_server, old["key"]) as c:
        assert c.get("/v1/functions").status_code == 401
    with as_key(api_server, new["key"]) as c:
        assert c.get("/v1/functions").status_code == 200
    listed = {k["id"]: k for k in operator.get("/v1/keys", params={"tenant": world.a,
                                                                    "include_revoked": True}).json()["keys"]}
    assert listed[old["id"]]["revoked_at"] is not None and listed[new["id"]]["revoked_at"] is None
    with httpx.Client(base_url=api_server.url, timeout=30) as anon:
        assert anon.get("/v1/functions").status_code == 401
        assert anon.get("/v1/functions", headers={"Authorization": "Bearer cfk_wrong"}).status_code == 401


def test_changes_are_audited_and_only_admins_read_the_log(api_server: ApiServer, operator: httpx.Client,
                                                          world: World) -> None:
    with world.client(api_server, "b_developer") as bdev:
        assert bdev.put("/v1/functions/bfn/env", json={"K": "v"}).status_code == 200
    entries = operator.get("/v1/audit", params={"tenant": world.b, "limit": 1000}).json()["entries"]
    ops = [(e["operation"], e["target"]) for e in entries]
    for expected in [("tenants.create", f"tenant/{world.b}"), ("keys.create", f"key/{world.keys['b_developer']['id']}"),
                     ("functions.deploy", "function/bfn"), ("pipelines.create", "pipeline/bpipe"),
                     ("rules.create", f"alert-rule/{world.b_rule}"), ("functions.env", "function/bfn"),
                     ("silences.create", f"silence/{world.b_silence}")]:
        assert expected in ops, (expected, ops)
    env = next(e for e in entries if e["operation"] == "functions.env")
    assert env["actor"] == {"key_id": world.keys["b_developer"]["id"], "name": "b-dev", "tenant": world.b}
    assert env["detail"] == {"names": ["K"]} and env["at"]
    deployed = next(e for e in entries if e["operation"] == "functions.deploy")
    assert deployed["detail"]["version"] == 1
    assert entries == sorted(entries, key=lambda e: (e["at"], e["id"]), reverse=True)
    # nothing of B in A's view; the operator sees both
    everyone = {e["tenant"] for e in operator.get("/v1/audit", params={"limit": 1000}).json()["entries"]}
    assert {world.a, world.b} <= everyone
    with world.client(api_server, "b_admin") as badm:
        own = badm.get("/v1/audit", params={"limit": 2}).json()["entries"]
        assert len(own) == 2 and {e["tenant"] for e in own} == {world.b}
        later = badm.get("/v1/audit", params={"since": own[0]["at"]}).json()["entries"]
        assert later and all(e["at"] >= own[0]["at"] for e in later)
        for params in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"since": "yesterday"}):
            r = badm.get("/v1/audit", params=params)
            assert r.status_code == 400 and r.json()["error"]["message"], (params, r.text)


def test_bad_key_and_tenant_requests_are_4xx_with_a_message(operator: httpx.Client, world: World) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/v1/keys", {"tenant": world.a, "role": "root", "name": "x"}, 400, "viewer"),
        ("POST", "/v1/keys", {"tenant": world.a, "role": "viewer"}, 400, "name"),
        ("POST", "/v1/keys", {"tenant": world.a, "role": "viewer", "name": ""}, 400, "name"),
        ("POST", "/v1/keys", {"tenant": world.a, "role": "viewer", "name": "x", "expires_at": past}, 400, "past"),
        ("POST", "/v1/keys", {"tenant": world.a, "role": "viewer", "name": "x", "expires_at": "soon"}, 400,
         "ISO-8601"),
        ("POST", "/v1/keys", {"tenant": world.a, "role": "viewer", "name": "x", "admin": True}, 400, "unknown"),
        ("POST", "/v1/keys", {"tenant": "no-such-team", "role": "viewer", "name": "x"}, 404, "no-such-team"),
        ("POST", "/v1/keys", {"tenant": "Bad Name", "role": "viewer", "name": "x"}, 400, "must match"),
        ("POST", "/v1/keys", [1, 2], 400, "JSON object"),
        ("POST", "/v1/tenants", {"name": "UPPER"}, 400, "must match"),
        ("POST", "/v1/tenants", {"name": world.a}, 409, "exists"),
        ("POST", "/v1/tenants", "team", 400, "JSON object"),
        ("DELETE", "/v1/keys/0", None, 400, "key_id"),
        ("DELETE", "/v1/keys/abc", None, 400, "key_id"),
        ("DELETE", "/v1/keys/99999999", None, 404, "no live key"),
        ("POST", "/v1/keys/99999999/rotate", None, 404, "no live key"),
    ]
    for method, path, body, status, words in cases:
        r = operator.request(method, path, json=body)
        assert r.status_code == status and words in r.json()["error"]["message"], (path, body, r.text)
    r = operator.post("/v1/keys", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_cli_tenants_and_keys(api_server: ApiServer, admin_key: str) -> None:
    """`cloudfn tenants create|list` and `cloudfn keys create|list|revoke|rotate` against the running API."""
    from typer.testing import CliRunner

    from serve_app.cli.main import app

    runner = CliRunner()
    env = {"CLOUDFN_API_URL": api_server.url, "CLOUDFN_API_KEY": admin_key}

    def run(*args: str, key: str | None = None, ok: bool = True) -> Any:
        res = runner.invoke(app, list(args), env={**env, **({"CLOUDFN_API_KEY": key} if key else {})})
        assert (res.exit_code == 0) == ok, (args, res.exit_code, res.output)
        return res

    team = f"cli-{uuid.uuid4().hex[:6]}"
    assert json_of(run("tenants", "create", team, "--json"))["name"] == team
    assert team in [t["name"] for t in json_of(run("tenants", "list", "--json"))]
    created = json_of(run("keys", "create", "--tenant", team, "--role", "invoker", "--name", "cli-ci", "--json"))
    plain = run("keys", "create", "--tenant", team, "--role", "viewer", "--name", "cli-view")
    viewer_key = plain.stdout.strip().splitlines()[0]
    assert viewer_key.startswith("cfk_") and "shown only now" in plain.stderr
    listed = json_of(run("keys", "list", "--tenant", team, "--json"))
    assert {k["name"] for k in listed} == {"cli-ci", "cli-view"} and all("key" not in k for k in listed)
    rotated = run("keys", "rotate", str(created["id"])).stdout.strip().splitlines()[0]
    assert rotated.startswith("cfk_") and rotated != created["key"]
    with as_key(api_server, created["key"]) as old, as_key(api_server, rotated) as new:
        assert old.get("/v1/functions").status_code == 401 and new.get("/v1/functions").status_code == 200
    assert "revoked" in run("keys", "revoke", str(listed[1]["id"])).stdout
    with as_key(api_server, viewer_key) as gone:
        assert gone.get("/v1/functions").status_code == 401
    failed = run("keys", "create", "--tenant", team, "--role", "root", "--name", "x", ok=False)
    assert "role must be one of" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
    refused = run("tenants", "create", "other", key=rotated, ok=False)  # an invoker is not the operator
    assert "HTTP 403" in refused.stderr


def json_of(res: Any) -> Any:
    import json

    return json.loads(res.stdout)


def test_whoami_names_the_keys_tenant_and_role(api_server: ApiServer, world: World) -> None:
    for who, tenant, role in (("a_viewer", world.a, "viewer"), ("b_developer", world.b, "developer")):
        with world.client(api_server, who) as c:
            r = c.get("/v1/whoami")
            assert r.status_code == 200, r.text
            assert r.json() == {"tenant": tenant, "role": role, "key_id": world.keys[who]["id"],
                                "key_name": world.keys[who]["name"]}
    with as_key(api_server, "cfk_" + "0" * 43) as bad:
        assert bad.get("/v1/whoami").status_code == 401
