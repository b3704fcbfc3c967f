"""Tenant quotas over real HTTP, PostgreSQL and Ray: a bursting tenant is refused (429 + Retry-After, nothing
queued) while another tenant's invocations in the same moment are all accepted and complete; a tenant's
concurrency quota holds its executions back without refusing them; function and bundle-storage quotas refuse
deploys; the operator alone sets quotas, with actionable refusals of bad input."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.conftest import ApiServer, deploy
from tests.integration.test_tenants import as_key, make_key

SLEEPER = "import time\n\ndef handler(event, context):\n    time.sleep(event.get('s', 0))\n    return {'ok': True}\n"
ENDED = ("succeeded", "failed", "timed_out", "cancelled")


@pytest.fixture(scope="module")
def operator(api_server: ApiServer, admin_key: str) -> Iterator[httpx.Client]:
    with as_key(api_server, admin_key) as c:
        yield c


def new_tenant(operator: httpx.Client, prefix: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """A fresh tenant with an admin and a developer key."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    assert operator.post("/v1/tenants", json={"name": name}).status_code == 201
    return name, {role: make_key(operator, name, role, f"{prefix}-{role}") for role in ("admin", "developer")}


def set_quotas(operator: httpx.Client, tenant: str, **quotas: int | None) -> dict[str, Any]:
    r = operator.put(f"/v1/tenants/{tenant}/quotas", json=quotas)
    assert r.status_code == 200, r.text
    body = dict(r.json())
    for k, v in quotas.items():
        assert body["quotas"][k] == (v if v is not None else body["defaults"][k]), body
    return body


async def fire(url: str, key: str, requests: list[tuple[str, Any]]) -> list[httpx.Response]:
    """Send every (path, event) invocation at once, each on its own connection."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120,
                                 limits=httpx.Limits(max_connections=len(requests))) as c:
        return list(await asyncio.gather(*(c.post(path, json=event) for path, event in requests)))


def ended(client: httpx.Client, task_ids: list[str]) -> list[dict[str, Any]]:
    """Each task's record once it has ended."""
    out = []
    for tid in task_ids:
        for _ in range(20):
            r = client.get(f"/v1/tasks/{tid}", params={"wait": 60})
            assert r.status_code == 200, r.text
            if r.json()["status"] in ENDED:
                break
        out.append(r.json())
        assert out[-1]["status"] in ENDED, out[-1]
    return out


def assert_quota_refusal(r: httpx.Response, tenant: str, quotas: set[str]) -> dict[str, Any]:
    """A 429 naming one of `quotas`, its limit and use, with a whole-second Retry-After."""
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1, r.headers
    err = dict(r.json()["error"])
    assert err["code"] == "quota_exceeded" and err["tenant"] == tenant and err["quota"] in quotas, err
    assert isinstance(err["limit"], int) and isinstance(err["used"], int) and err["quota"] in err["message"], err
    return err


# the quota that binds first in each case: the token bucket (a burst of 4, then 1 a second) or the queue (2 may
# wait beyond the 2 running)
BURSTS = {"invocations_per_s": {"invocations_per_s": 1, "burst": 4, "concurrency": 2, "queued_tasks": 1000},
          "queued_tasks": {"invocations_per_s": 100_000, "burst": 100_000, "concurrency": 2, "queued_tasks": 2}}


@pytest.mark.parametrize("binding", sorted(BURSTS))
def test_a_bursting_tenant_is_refused_while_another_tenants_invocations_are_all_accepted(
        api_server: ApiServer, operator: httpx.Client, database_url: str, binding: str) -> None:
    loud, loud_keys = new_tenant(operator, "q-loud")
    calm, calm_keys = new_tenant(operator, "q-calm")
    set_quotas(operator, loud, **BURSTS[binding])
    for keys in (loud_keys, calm_keys):
        with as_key(api_server, keys["developer"]["key"]) as dev:
            assert deploy(dev, "work", files={"main.py": SLEEPER}).status_code == 201
    # the loud tenant's burst on both invocation paths (the pure-ASGI fast path, and the FastAPI route that any
    # other query parameter takes), in the same moment as the calm tenant's invocations
    fast, routed = "/v1/functions/work/invocations", "/v1/functions/work/invocations?via=fastapi"
    loud_reqs = [(fast if i % 2 else routed, {"s": 0.5, "i": i}) for i in range(40)]
    calm_reqs = [(fast if i % 2 else routed, {"s": 0.5, "i": i}) for i in range(16)]

    async def both() -> tuple[list[httpx.Response], list[httpx.Response]]:
        a, b = await asyncio.gather(fire(api_server.url, loud_keys["developer"]["key"], loud_reqs),
                                    fire(api_server.url, calm_keys["developer"]["key"], calm_reqs))
        return a, b

    loud_out, calm_out = asyncio.run(both())
    assert [r.status_code for r in calm_out] == [202] * len(calm_reqs), [r.text for r in calm_out
                                                                         if r.status_code != 202]
    refused = [(path, r) for (path, _), r in zip(loud_reqs, loud_out, strict=True) if r.status_code == 429]
    accepted = [r.json()["task_id"] for r in loud_out if r.status_code == 202]
    assert len(refused) + len(accepted) == len(loud_reqs), [r.text for r in loud_out
                                                            if r.status_code not in (202, 429)]
    assert {path for path, _ in refused} == {fast, routed}, "both invocation paths refuse with the same answer"
    errors = [assert_quota_refusal(r, loud, {binding}) for _, r in refused]
    assert {e["limit"] for e in errors} == {BURSTS[binding][binding]}
    if binding == "queued_tasks":  # refused only with its queue full (2 running at most, so 2 waiting at least)
        assert min(e["used"] for e in errors) >= 2, errors
    else:  # refused only with the burst spent
        assert {e["used"] for e in errors} == {4}, errors
    assert len(accepted) >= 4, "the first four fit every quota"
    # every accepted invocation of either tenant completes; a refused one left nothing behind
    with as_key(api_server, calm_keys["developer"]["key"]) as c:
        assert {t["status"] for t in ended(c, [r.json()["task_id"] for r in calm_out])} == {"succeeded"}
    with as_key(api_server, loud_keys["developer"]["key"]) as c:
        assert {t["status"] for t in ended(c, accepted)} == {"succeeded"}
    eng = create_engine(database_url)
    with eng.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM tasks WHERE namespace = :ns"), {"ns": loud}).scalar_one()
    eng.dispose()
    assert rows == len(accepted), "a 429 means nothing was queued"
    # the figures, as the loud tenant's admin sees them (only its own tenant's series)
    with as_key(api_server, loud_keys["admin"]["key"]) as adm:
        metrics = {(s.name, s.labels.get("tenant"), s.labels.get("quota")): s.value
                   for fam in text_string_to_metric_families(adm.get("/metrics").text) for s in fam.samples}
    for quota, limit in BURSTS[binding].items():
        assert metrics[("cloudfn_quota_limit", loud, quota)] == limit
    assert metrics[("cloudfn_quota_rejections_total", loud, binding)] == len(refused)
    assert metrics[("cloudfn_quota_used", loud, "functions")] in (0, 1), "counted at most 5 s ago"
    assert not any(t == calm for _, t, _ in metrics), "another tenant's figures are not shown"


def test_a_tenants_concurrency_quota_queues_its_executions_and_is_never_exceeded(
        api_server: ApiServer, operator: httpx.Client) -> None:
    tenant, keys = new_tenant(operator, "q-conc")
    set_quotas(operator, tenant, concurrency=3, queued_tasks=100)
    with as_key(api_server, keys["developer"]["key"]) as dev:
        for fn in ("one", "two"):  # the quota is the tenant's, across its functions
            assert deploy(dev, fn, files={"main.py": SLEEPER}, config={"cpus": 0.1}).status_code == 201
        reqs = [(f"/v1/functions/{fn}/invocations", {"s": 0.4, "i": i}) for i in range(8) for fn in ("one", "two")]
        out = asyncio.run(fire(api_server.url, keys["developer"]["key"], reqs))
        assert [r.status_code for r in out] == [202] * len(reqs), "held back by the quota, never refused"
        records = ended(dev, [r.json()["task_id"] for r in out])
    assert {r["status"] for r in records} == {"succeeded"}
    # the most executions running at once, from the records' own start and end (not the test's clock)
    edges = sorted([(datetime.fromisoformat(r["started_at"]), 1) for r in records] +
                   [(datetime.fromisoformat(r["finished_at"]), -1) for r in records], key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert 1 <= most <= 3, most
    with as_key(api_server, keys["admin"]["key"]) as adm:
        usage = adm.get(f"/v1/tenants/{tenant}/quotas").json()["usage"]
    assert usage["concurrency"] == 0 and usage["queued_tasks"] == 0 and usage["functions"] == 2, usage


def test_a_function_held_back_by_its_tenants_quota_is_not_starved_by_a_busier_one(
        api_server: ApiServer, operator: httpx.Client) -> None:
    tenant, keys = new_tenant(operator, "q-fair")
    set_quotas(operator, tenant, concurrency=1)
    with as_key(api_server, keys["developer"]["key"]) as dev:
        for fn in ("busy", "rare"):
            assert deploy(dev, fn, files={"main.py": SLEEPER}).status_code == 201
        busy = asyncio.run(fire(api_server.url, keys["developer"]["key"],
                                [("/v1/functions/busy/invocations", {"s": 0.3, "i": i}) for i in range(8)]))
        rare = dev.post("/v1/functions/rare/invocations", json={"s": 0})
        assert rare.status_code == 202 and {r.status_code for r in busy} == {202}
        busy_records = ended(dev, [r.json()["task_id"] for r in busy])
        rare_record = ended(dev, [rare.json()["task_id"]])[0]
    starts = sorted(datetime.fromisoformat(r["started_at"]) for r in busy_records)
    # the held-back function takes the next free place in turn with the busy one, not after its whole backlog
    assert datetime.fromisoformat(rare_record["started_at"]) < starts[-3], (rare_record["started_at"], starts)
    spans = sorted((datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"]))
                   for r in [*busy_records, rare_record])
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False)), "one at a time"


def test_function_and_bundle_storage_quotas_refuse_deploys(api_server: ApiServer, operator: httpx.Client) -> None:
    tenant, keys = new_tenant(operator, "q-deploy")
    set_quotas(operator, tenant, functions=1)
    with as_key(api_server, keys["developer"]["key"]) as dev:
        assert deploy(dev, "first", files={"main.py": SLEEPER}).status_code == 201
        err = assert_quota_refusal(deploy(dev, "second", files={"main.py": SLEEPER}), tenant, {"functions"})
        assert err["limit"] == 1 and err["used"] == 1, err
        assert dev.get("/v1/functions/second").status_code == 404, "nothing of the refused deploy was kept"
        assert deploy(dev, "first", files={"main.py": SLEEPER + "# v2\n"}).status_code == 201, "a new version is " \
            "not a new function"
        used = operator.get(f"/v1/tenants/{tenant}/quotas").json()["usage"]["bundle_bytes"]
        assert used > 0
        set_quotas(operator, tenant, functions=10, bundle_bytes=used)
        err = assert_quota_refusal(deploy(dev, "second", files={"main.py": SLEEPER + "# other\n"}), tenant,
                                   {"bundle_bytes"})
        assert err["limit"] == used and err["used"] == used, err
        assert dev.get("/v1/functions/second").status_code == 404
        set_quotas(operator, tenant, functions=None, bundle_bytes=None)  # back to the generous defaults
        assert deploy(dev, "second", files={"main.py": SLEEPER + "# other\n"}).status_code == 201


def test_bad_quota_input_is_refused_with_an_actionable_message(api_server: ApiServer,
                                                               operator: httpx.Client) -> None:
    tenant, _ = new_tenant(operator, "q-bad")
    path = f"/v1/tenants/{tenant}/quotas"
    cases: list[tuple[Any, str]] = [
        ({"concurrency": -1}, "concurrency must be between 1"), ({"burst": 0}, "burst must be between 1"),
        ({"queued_tasks": -5}, "queued_tasks must be between 0"), ({"concurrency": 1.5}, "whole number"),
        ({"functions": "3"}, "whole number"), ({"burst": True}, "whole number"),
        ({"concurrency": 2**31}, "between 1 and 2147483647"), ({"speed": 3}, "unknown quotas: speed"),
        ({}, "send a JSON object"), ([1, 2], "send a JSON object"),
    ]
    for body, message in cases:
        r = operator.put(path, json=body)
        assert r.status_code == 400 and message in r.json()["error"]["message"], (body, r.text)
    r = operator.put(path, content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"], r.text
    r = operator.put("/v1/tenants/no-such-tenant-q/quotas", json={"concurrency": 2})
    assert r.status_code == 404 and "no tenant named 'no-such-tenant-q'" in r.json()["error"]["message"], r.text
    assert operator.get("/v1/tenants/no-such-tenant-q/quotas").status_code == 404
    assert operator.put("/v1/tenants/Not_A_Name/quotas", json={"concurrency": 2}).status_code == 400
    # nothing of the refused requests was stored
    assert operator.get(path).json()["overrides"] == {k: None for k in operator.get(path).json()["quotas"]}


def test_only_the_operator_sets_quotas_and_another_tenants_are_hidden(api_server: ApiServer,
                                                                        operator: httpx.Client) -> None:
    mine, my_keys = new_tenant(operator, "q-mine")
    theirs, _ = new_tenant(operator, "q-theirs")
    set_quotas(operator, mine, concurrency=7)
    with as_key(api_server, my_keys["admin"]["key"]) as adm, as_key(api_server, my_keys["developer"]["key"]) as dev:
        got = adm.get(f"/v1/tenants/{mine}/quotas")
        assert got.status_code == 200 and got.json()["quotas"]["concurrency"] == 7, got.text
        assert got.json()["overrides"]["concurrency"] == 7 and got.json()["overrides"]["burst"] is None
        r = adm.put(f"/v1/tenants/{mine}/quotas", json={"concurrency": 100})
        assert r.status_code == 403 and "operator" in r.json()["error"]["message"], r.text
        for who in (dev,):
            assert who.get(f"/v1/tenants/{mine}/quotas").status_code == 403
            assert who.put(f"/v1/tenants/{mine}/quotas", json={"concurrency": 100}).status_code == 403
        for method in ("GET", "PUT"):
            found = adm.request(method, f"/v1/tenants/{theirs}/quotas", json={"concurrency": 1})
            missing = adm.request(method, "/v1/tenants/q-none-such/quotas", json={"concurrency": 1})
            assert found.status_code == missing.status_code == 404, (found.text, missing.text)
            assert found.json()["error"]["message"].replace(theirs, "X") == \
                missing.json()["error"]["message"].replace("q-none-such", "X")
    assert operator.get(f"/v1/tenants/{mine}/quotas").json()["quotas"]["concurrency"] == 7, "refused: unchanged"
    audit = operator.get("/v1/audit", params={"tenant": mine, "operation": "tenants.quotas"}).json()["entries"]
    assert len(audit) == 1 and audit[0]["detail"] == {"set": {"concurrency": 7}}, audit


def test_cli_tenants_quota_shows_and_sets_a_tenants_quotas(api_server: ApiServer, admin_key: str,
                                                           operator: httpx.Client) -> None:
    """`cloudfn tenants quota NAME [--concurrency N ...] [--reset Q]` against the running API."""
    import json

    from typer.testing import CliRunner

    from serve_app.cli.main import app

    tenant, keys = new_tenant(operator, "q-cli")
    runner = CliRunner()

    def run(*args: str, key: str = admin_key, ok: bool = True) -> Any:
        res = runner.invoke(app, list(args), env={"CLOUDFN_API_URL": api_server.url, "CLOUDFN_API_KEY": key})
        assert (res.exit_code == 0) == ok, (args, res.exit_code, res.output)
        return res

    out = json.loads(run("tenants", "quota", tenant, "--concurrency", "3", "--burst", "20", "--json").stdout)
    assert out["quotas"]["concurrency"] == 3 and out["overrides"]["burst"] == 20
    out = json.loads(run("tenants", "quota", tenant, "--reset", "burst", "--json").stdout)
    assert out["overrides"]["burst"] is None and out["overrides"]["concurrency"] == 3
    table = run("tenants", "quota", tenant).stdout
    assert "concurrency" in table and "operator" in table and "default" in table
    refused = run("tenants", "quota", tenant, "--concurrency", "9", key=keys["admin"]["key"], ok=False)
    assert "HTTP 403" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    bad = run("tenants", "quota", tenant, "--reset", "speed", ok=False)
    assert "unknown quotas: speed" in bad.stderr
