"""Warm density through the real platform (real Ray, real sandbox): many versions' warm children on a few
shared warm hosts, bursts still parallel up to the cores, a host's death survived, the warm state on
/metrics."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tests.conftest import deploy

TOKEN = '''
import os, time
TOKEN = os.urandom(8).hex()  # one per child: tells a warm child from a new one
def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {{"fn": {name!r}, "child": TOKEN, "i": event.get("i")}}
'''
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")


def call(api: httpx.Client, name: str, event: dict[str, Any]) -> dict[str, Any]:
    """One `?wait=` invocation's record."""
    rec = api.post(f"/v1/functions/{name}/invocations", params={"wait": 60}, json=event).json()
    assert rec["status"] in TERMINAL, rec
    return dict(rec)


def wait_done(api: httpx.Client, tid: str, timeout: float = 90.0) -> dict[str, Any]:
    """Poll a task until it ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = api.get(f"/v1/tasks/{tid}").json()
        if rec["status"] in TERMINAL:
            return dict(rec)
        time.sleep(0.1)
    raise AssertionError(f"task {tid} did not end")


def metric(api: httpx.Client, name: str) -> float:
    """One unlabelled sample of /metrics."""
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not on /metrics")


def test_many_versions_stay_warm_on_a_few_shared_hosts(api: httpx.Client, api_server: Any) -> None:
    hosts = api_server.platform.hosts
    assert hosts is not None
    names = [f"dense{i}" for i in range(6)]
    for n in names:
        assert deploy(api, n, files={"main.py": TOKEN.format(name=n)}).status_code == 201
    deadline = time.monotonic() + 90
    while not all(h is not None and h.ready for h in hosts.hosts) and time.monotonic() < deadline:
        for n in names:  # the first calls start the hosts (tasks serve until they answer)
            assert call(api, n, {})["status"] == "succeeded"
    assert all(h is not None and h.ready for h in hosts.hosts)
    firsts = {n: call(api, n, {"i": 1}) for n in names}
    seconds = {n: call(api, n, {"i": 2}) for n in names}
    for n in names:  # each version's own code, in the same warm child as its previous call
        assert firsts[n]["output"]["fn"] == seconds[n]["output"]["fn"] == n
        assert seconds[n]["output"]["child"] == firsts[n]["output"]["child"]
        assert seconds[n]["metrics"]["cold_start"] is False
    assert len({firsts[n]["output"]["child"] for n in names}) == len(names)  # one child per version
    # every version's bundle is known to be on its host: its later calls go without the object ref
    assert sum(len(h.bundles) for h in hosts.hosts if h is not None) >= len(names)
    assert len(hosts.hosts) <= 2  # a host per core, not a worker per version
    deadline = time.monotonic() + 30  # the hosts publish their warm children to the ledger each second
    while metric(api, "cloudfn_warm_functions") < len(names) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(api, "cloudfn_warm_functions") >= len(names)
    assert metric(api, 'cloudfn_warm_pss_bytes{kind="sandbox_child"}') > 0


def test_burst_runs_in_parallel_up_to_the_cores(api: httpx.Client, database_url: str) -> None:
    assert deploy(api, "densburst", files={"main.py": TOKEN.format(name="densburst")}).status_code == 201
    assert call(api, "densburst", {})["status"] == "succeeded"
    tids = [api.post("/v1/functions/densburst/invocations", json={"sleep": 1.5, "i": i}).json()["task_id"]
            for i in range(4)]
    recs = [wait_done(api, t) for t in tids]
    assert all(r["status"] == "succeeded" for r in recs), recs
    with create_engine(database_url).connect() as conn:
        rows = conn.execute(text("SELECT started_at, finished_at FROM execution_metrics WHERE task_id = ANY(:t)"),
                            {"t": tids}).all()
    assert len(rows) == 4
    spans = [(r[0].timestamp() if hasattr(r[0], "timestamp") else float(r[0]),
              r[1].timestamp() if hasattr(r[1], "timestamp") else float(r[1])) for r in rows]
    overlap = max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans)
    assert overlap >= 2, spans  # at least as many at once as the 2 cores
    assert len({r["output"]["child"] for r in recs}) >= 2  # in distinct children


def test_a_dead_host_is_replaced_and_its_versions_answer(api: httpx.Client, api_server: Any,
                                                         database_url: str) -> None:
    import ray

    from serve_app.dispatch.warm_hosts import PING_S

    hosts = api_server.platform.hosts
    assert hosts is not None
    assert deploy(api, "densdie", files={"main.py": TOKEN.format(name="densdie")}).status_code == 201
    deadline = time.monotonic() + 90
    before = call(api, "densdie", {"i": 0})
    while not (before["status"] == "succeeded" and before["metrics"]["cold_start"] is False) \
            and time.monotonic() < deadline:
        before = call(api, "densdie", {"i": 0})
    assert before["metrics"]["cold_start"] is False  # warm on its host
    old = [h for h in hosts.hosts if h is not None]
    for h in old:
        ray.kill(h.actor)  # the hosts die while idle
    time.sleep(PING_S * 3 + 1)  # their pings find them dead
    after = [call(api, "densdie", {"i": k}) for k in range(10)]
    assert all(a["status"] == "succeeded" and a["output"]["fn"] == "densdie" for a in after), after
    assert after[0]["output"]["child"] != before["output"]["child"]  # cold again, in a new child
    deadline = time.monotonic() + 90
    while not any(h is not None and h.ready and h not in old for h in hosts.hosts) and time.monotonic() < deadline:
        call(api, "densdie", {})
    assert any(h is not None and h.ready and h not in old for h in hosts.hosts)
    with create_engine(database_url).connect() as conn:
        rows = conn.execute(text("SELECT count(*), count(DISTINCT task_id) FROM execution_metrics"
                                 " WHERE function = 'densdie'")).one()
    assert rows[0] == rows[1]  # one execution row per invocation


def test_a_host_under_a_tiny_budget_keeps_the_most_recent_and_evicted_versions_answer_cold(
        ray_cluster: Any) -> None:
    import hashlib
    import shutil
    import uuid

    import ray

    from cluster.executor import WarmHost
    from cluster.sandbox.warm import WarmLedger
    from core.models import FunctionConfig
    from tests.conftest import zip_files

    root = f"/tmp/cloudfn-sandbox-evict-{uuid.uuid4().hex[:8]}"  # its own ledger: only this host's children
    host = WarmHost.options(runtime_env={"env_vars": {  # type: ignore[attr-defined]
        "CLOUDFN_WARM_MEMORY_MB": "16", "CLOUDFN_SANDBOX_ROOT": root}}).remote()
    ledger = WarmLedger(Path(root))
    versions = {}
    for name in ("eva", "evb", "evc"):
        data = zip_files({"main.py": TOKEN.format(name=name)})
        versions[name] = (hashlib.sha256(data).hexdigest(), [ray.put(data)])

    def run(name: str, i: int, send_bundle: bool = True) -> dict[str, Any]:
        sha, box = versions[name]
        common = {"key": f"t/{name}/{sha}", "namespace": "t", "function": name, "version": 1,
                  "handler": "main.handler", "config": FunctionConfig(timeout_s=30).model_dump(mode="json")}
        out = ray.get(host.run.remote(sha, box if send_bundle else None, common,
                                      [(f"task-{name}-{i}", b'{"i": %d}' % i)]), timeout=120)
        assert out[0]["status"] == "succeeded", out
        return dict(out[0])

    def warm_keys(expected: set[str]) -> set[str]:
        """The versions warm on the host once its budget ticks settled on `expected` (or after 30 s)."""
        deadline = time.monotonic() + 30
        keys: set[str] = set()
        while time.monotonic() < deadline:
            keys = {c.key.split("/")[1] for c in ledger.read().children}
            if keys == expected:
                break
            time.sleep(0.2)
        return keys

    try:
        first = {n: run(n, 1) for n in ("eva", "evb", "evc")}
        assert warm_keys({"evc"}) == {"evc"}  # 16 MiB: room for the most recently used child only
        assert ledger.read().evictions >= 2
        again = run("eva", 2)  # evicted: a cold start, its own code, a new child
        assert again["cold_start"] and json_output(again)["fn"] == "eva"
        assert json_output(again)["child"] != json_output(first["eva"])["child"]
        assert warm_keys({"eva"}) == {"eva"}
        warm = run("eva", 3, send_bundle=False)  # as the platform calls a host that has the bundle
        assert not warm["cold_start"] and json_output(warm)["child"] == json_output(again)["child"]
        cold = run("evb", 4, send_bundle=False)  # evicted earlier: a cold start, and no ref needed for it
        assert cold["cold_start"] and json_output(cold)["fn"] == "evb"
    finally:
        ray.kill(host)
        shutil.rmtree(root, ignore_errors=True)


def json_output(out: dict[str, Any]) -> dict[str, Any]:
    """The handler's output of an executor outcome."""
    import json

    return dict(json.loads(out["output_json"]))


def test_a_host_fetches_a_removed_bundle_again_from_the_ref_it_kept(ray_cluster: Any, tmp_path: Path,
                                                                    monkeypatch: Any) -> None:
    import hashlib
    import shutil
    import tempfile

    import pytest
    import ray

    from cluster.executor import Bundles, bundles_root
    from tests.conftest import zip_files

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's own bundles root
    source = TOKEN.format(name="kept")
    data = zip_files({"main.py": source})
    sha = hashlib.sha256(data).hexdigest()
    bundles = Bundles()
    first = bundles.path(sha, [ray.put(data)])
    assert first.parent == bundles_root() and (first / "main.py").read_text() == source
    shutil.rmtree(first)  # gone from the node (e.g. /tmp cleaned)
    again = bundles.path(sha, None)  # a call without the ref: fetched from the one the host kept
    assert again == first and (again / "main.py").read_text() == source
    with pytest.raises(LookupError, match="never sent"):
        Bundles().path("0" * 64, None)  # never sent to this host, not on the node


def test_a_burst_starts_no_more_children_on_its_host_than_the_versions_slots(api: httpx.Client) -> None:
    """One dispatch round hands out many runners before any batch is submitted: each must take one of the
    version's host slots then, or a burst of N starts N children on the host (seen: 31 for 16 slots)."""
    from cluster.sandbox.warm import WarmLedger, default_root
    from serve_app.platform import WARM_HOST_SLOTS

    assert deploy(api, "densslots", files={"main.py": TOKEN.format(name="densslots")},
                  config={"max_batch": 1}).status_code == 201
    assert call(api, "densslots", {})["status"] == "succeeded"
    with ThreadPoolExecutor(3 * WARM_HOST_SLOTS) as pool:  # arriving together: they queue, one round takes them
        tids = list(pool.map(lambda i: api.post("/v1/functions/densslots/invocations",
                                                json={"sleep": 0.3, "i": i}).json()["task_id"],
                             range(3 * WARM_HOST_SLOTS)))
    recs = [wait_done(api, t) for t in tids]
    assert all(r["status"] == "succeeded" for r in recs), recs
    ledger = WarmLedger(default_root())
    on_hosts: list[Any] = []
    deadline = time.monotonic() + 15
    while not on_hosts and time.monotonic() < deadline:  # the host publishes its warm children each second
        time.sleep(1.0)
        state = ledger.read()
        on_hosts = [c for c in state.children
                    if c.key.split("/")[1] == "densslots" and state.hosts.get(c.host, ("", 0))[0] == "warm_host"]
    assert 1 <= len(on_hosts) <= WARM_HOST_SLOTS, on_hosts


def test_a_new_functions_first_burst_runs_on_its_warm_host(api: httpx.Client) -> None:
    """A version that never ran has no known speed: its first burst waits for host slots (for a moment) rather
    than spilling to Ray workers started one by one for its runtime_env, so no task worker holds a child of it."""
    from cluster.sandbox.warm import WarmLedger, default_root

    assert deploy(api, "densnew", files={"main.py": TOKEN.format(name="densnew")}).status_code == 201
    with ThreadPoolExecutor(32) as pool:
        tids = list(pool.map(lambda i: api.post("/v1/functions/densnew/invocations", json={"i": i}).json()["task_id"],
                             range(64)))
    recs = [wait_done(api, t) for t in tids]
    assert all(r["status"] == "succeeded" for r in recs), recs
    time.sleep(2.5)  # the pools publish their warm children to the ledger each second
    state = WarmLedger(default_root()).read()
    kinds = [state.hosts.get(c.host, ("?", 0))[0] for c in state.children if c.key.split("/")[1] == "densnew"]
    assert kinds and set(kinds) == {"warm_host"}, kinds


def test_a_new_functions_first_calls_tell_its_speed_before_the_rest_of_its_burst_runs(api: httpx.Client) -> None:
    """Until a version of unknown speed has run BATCH_MIN_SAMPLES times, at most PROBE_CALLS of its calls run at
    once: a burst of a millisecond handler does not start a child per host slot (nor a Ray worker per queued
    call) before it is known to run best in batches."""
    from datetime import datetime

    from serve_app.dispatch.dispatcher import BATCH_MIN_SAMPLES, PROBE_CALLS

    assert deploy(api, "densprobe", files={"main.py": TOKEN.format(name="densprobe")}).status_code == 201
    with ThreadPoolExecutor(32) as pool:
        tids = list(pool.map(
            lambda i: api.post("/v1/functions/densprobe/invocations", json={"i": i}).json()["task_id"], range(200)))
    recs = [wait_done(api, t) for t in tids]
    assert all(r["status"] == "succeeded" for r in recs), recs
    started = [datetime.fromisoformat(r["started_at"]) for r in recs]
    known_at = sorted(datetime.fromisoformat(r["finished_at"]) for r in recs)[BATCH_MIN_SAMPLES - 1]
    # the first PROBE_CALLS, and one more each time one of the first samples (but the last) came back
    probes = sum(1 for t in started if t < known_at)
    assert probes <= PROBE_CALLS + BATCH_MIN_SAMPLES - 1, probes
    assert len({r["output"]["child"] for r in recs}) < 16  # not a child per host slot
