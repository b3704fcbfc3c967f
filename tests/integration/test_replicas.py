"""Two API replicas over one database and one Ray cluster, each a real Platform served over HTTP: a burst spread
over both runs every task once, a function's max_concurrency holds across them, one Idempotency-Key sent to
both gives one task, a wait or long-poll on either replica answers with the record, and when one replica dies
the other takes over its tasks under the recovery rules."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from serve_app.replicas.membership import LEASE_S, rendezvous
from tests.conftest import ApiServer, deploy

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
SLEEPER = ("import time\n\ndef handler(event, context):\n    time.sleep(event.get('s', 0))\n"
           "    return {'n': event.get('n')}\n")


class Pair:
    """Replicas A and B with a client each; `lapses` records a replica whose lease ran out."""

    def __init__(self, settings: Any, database_url: str, key: str) -> None:
        shared = settings.model_copy(update={"api_replicas": 2})
        self.lapses: list[str] = []
        self.a = ApiServer(shared, database_url, on_lapse=lambda: self.lapses.append("a"))
        self.b = ApiServer(shared, database_url, on_lapse=lambda: self.lapses.append("b"))
        self.clients = {s: httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
                        for s in (self.a, self.b)}

    def client(self, server: ApiServer) -> httpx.Client:
        return self.clients[server]

    def homed(self, prefix: str, at: ApiServer) -> str:
        """A function name (new) whose home is replica `at`."""
        homes = sorted([self.a.platform.replica_id, self.b.platform.replica_id])
        for _ in range(1000):
            name = f"{prefix}-{uuid.uuid4().hex[:6]}"
            if rendezvous(homes, f"default/{name}") == at.platform.replica_id:
                return name
        raise AssertionError("no name homed there")


@pytest.fixture(scope="module")
def pair(settings: Any, database_url: str, ray_cluster: Any, admin_key: str) -> Iterator[Pair]:
    p = Pair(settings, database_url, admin_key)
    p.a.start()
    p.b.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            len(s.platform.membership.homes) == 2 and s.platform.replica_id in s.platform.membership.homes
            for s in (p.a, p.b)):
        time.sleep(0.2)
    assert len(p.a.platform.membership.homes) == 2, "the two replicas did not see each other as homes"
    yield p
    for c in p.clients.values():
        c.close()
    p.a.stop()
    if p.b.thread.is_alive():
        p.b.stop()
    for server in (p.a, p.b):  # their warm hosts (and so their children) belong to this process: stop them too
        for host in server.platform.hosts.hosts if server.platform.hosts is not None else []:
            if host is not None:
                host.kill()


def sql(database_url: str, query: str, **params: Any) -> list[Any]:
    from core.db.engine import make_engine

    eng = make_engine(database_url, pool_size=1)
    try:
        with eng.connect() as conn:
            return list(conn.execute(text(query), params).all())
    finally:
        eng.dispose()


def wait_terminal(client: httpx.Client, ids: list[str], timeout_s: float = 120) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    records: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        got = client.post("/v1/tasks/lookup", json={"ids": ids}).json()["tasks"]
        records = {r["task_id"]: r for r in got}
        if len(records) == len(ids) and all(r["status"] in TERMINAL for r in records.values()):
            return records
        time.sleep(0.3)
    open_ = {i: records.get(i, {}).get("status") for i in ids if records.get(i, {}).get("status") not in TERMINAL}
    raise AssertionError(f"{len(open_)} tasks not terminal: {list(open_.items())[:5]}")


def invoke(client: httpx.Client, name: str, event: Any, **kw: Any) -> httpx.Response:
    return client.post(f"/v1/functions/{name}/invocations", json=event, **kw)


def test_a_burst_over_both_replicas_runs_every_task_once(pair: Pair, database_url: str) -> None:
    names = [pair.homed("rep-a", pair.a), pair.homed("rep-b", pair.b)]
    for n in names:
        assert deploy(pair.client(pair.a), n, files={"main.py": SLEEPER}).status_code == 201
    jobs = [(pair.a if i % 2 else pair.b, names[(i // 2) % 2], i) for i in range(240)]

    def send(job: tuple[ApiServer, str, int]) -> str:
        server, name, i = job
        r = invoke(pair.client(server), name, {"n": i})
        assert r.status_code == 202, r.text
        return str(r.json()["task_id"])

    with ThreadPoolExecutor(16) as ex:
        ids = list(ex.map(send, jobs))
    records = wait_terminal(pair.client(pair.a), ids)
    assert {r["status"] for r in records.values()} == {"succeeded"}
    assert sorted(r["output"]["n"] for r in records.values()) == list(range(240))
    executions = dict(sql(database_url, "SELECT task_id, count(*) FROM execution_metrics WHERE task_id = ANY(:ids)"
                               " GROUP BY task_id", ids=ids))
    assert len(executions) == 240 and set(executions.values()) == {1}, "a task ran more or less than once"
    owners = dict(sql(database_url, "SELECT function_name, array_agg(DISTINCT owner) FROM tasks WHERE id = ANY(:ids)"
                                    " GROUP BY function_name", ids=ids))
    # every task of a function ran at the function's home, whichever replica accepted it
    assert owners == {names[0]: [pair.a.platform.replica_id], names[1]: [pair.b.platform.replica_id]}


def test_max_concurrency_holds_across_replicas(pair: Pair, database_url: str) -> None:
    name = pair.homed("rep-conc", pair.b)
    assert deploy(pair.client(pair.a), name, files={"main.py": SLEEPER},
                  config={"max_concurrency": 2, "max_batch": 1}).status_code == 201
    ids = [invoke(pair.client(pair.a if i % 2 else pair.b), name, {"s": 0.3, "n": i}).json()["task_id"]
           for i in range(16)]
    records = wait_terminal(pair.client(pair.a), ids)
    assert {r["status"] for r in records.values()} == {"succeeded"}
    spans = sql(database_url, "SELECT extract(epoch from started_at), extract(epoch from finished_at)"
                              " FROM execution_metrics WHERE task_id = ANY(:ids)", ids=ids)
    assert len(spans) == 16
    edges = sorted([(float(s), 1) for s, _ in spans] + [(float(f), -1) for _, f in spans], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= 2, f"{peak} executions of a max_concurrency=2 function ran at once across the replicas"


def test_one_idempotency_key_sent_to_both_replicas_gives_one_task(pair: Pair, database_url: str) -> None:
    name = pair.homed("rep-idem", pair.a)
    assert deploy(pair.client(pair.a), name, files={"main.py": SLEEPER}).status_code == 201
    key = f"k-{uuid.uuid4().hex}"
    start = threading.Barrier(8)

    def send(i: int) -> str:  # even: to B, odd: to A, all at once
        start.wait()
        r = invoke(pair.client(pair.a if i % 2 else pair.b), name, {"n": i}, headers={"Idempotency-Key": key})
        assert r.status_code in (200, 202), r.text
        return str(r.json()["task_id"])

    with ThreadPoolExecutor(8) as ex:
        answers = list(ex.map(send, range(8)))
    assert len(set(answers)) == 1, answers
    rows = sql(database_url, "SELECT id FROM tasks WHERE idempotency_key = :k", k=key)
    assert len(rows) == 1
    wait_terminal(pair.client(pair.b), answers[:1])
    runs = sql(database_url, "SELECT count(*) FROM execution_metrics WHERE task_id = :t", t=answers[0])
    assert runs[0][0] == 1


def test_waits_and_reads_answer_on_either_replica(pair: Pair) -> None:
    name = pair.homed("rep-wait", pair.a)
    assert deploy(pair.client(pair.a), name, files={"main.py": SLEEPER}).status_code == 201
    # accepted by B, run by A, answered by B once it ends
    r = invoke(pair.client(pair.b), name, {"n": 7, "s": 0.2}, params={"wait": 30})
    assert r.status_code == 200 and r.json()["status"] == "succeeded" and r.json()["output"] == {"n": 7}
    single = pair.client(pair.a).get(f"/v1/tasks/{r.json()['task_id']}").json()
    assert {k: single[k] for k in ("status", "output", "attempt", "started_at", "finished_at")} == \
        {k: r.json()[k] for k in ("status", "output", "attempt", "started_at", "finished_at")}
    # a long-poll on the replica that does not run it wakes when the home commits the end
    t = invoke(pair.client(pair.a), name, {"n": 8, "s": 1.0}).json()["task_id"]
    polled = pair.client(pair.b).get(f"/v1/tasks/{t}", params={"wait": 30})
    assert polled.status_code == 200 and polled.json()["status"] == "succeeded"
    batch = pair.client(pair.b).post("/v1/tasks/lookup", json={"ids": [t, r.json()["task_id"]]}).json()["tasks"]
    assert [b["task_id"] for b in batch] == [t, r.json()["task_id"]]
    assert batch[0] == pair.client(pair.a).get(f"/v1/tasks/{t}").json()


def test_a_deploy_on_one_replica_is_served_at_once_by_the_other(pair: Pair) -> None:
    name = pair.homed("rep-ver", pair.b)
    v = "def handler(event, context):\n    return {'v': %d}\n"
    assert deploy(pair.client(pair.a), name, files={"main.py": v % 1}).status_code == 201
    first = invoke(pair.client(pair.b), name, {}, params={"wait": 30}).json()
    assert first["output"] == {"v": 1} and first["version"] == 1
    assert ("default", name) in pair.b.platform.registry._active  # B holds version 1 in its cache
    assert deploy(pair.client(pair.a), name, files={"main.py": v % 2}).status_code == 201
    def b_holds_version_1() -> bool:  # B, the home, may load version 2 at once (to start its warm children)
        cached = pair.b.platform.registry._active.get(("default", name))
        return cached is not None and cached.version == 1

    deadline = time.monotonic() + 10
    while b_holds_version_1() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not b_holds_version_1(), "B was not told of the deploy on A"
    for server in (pair.a, pair.b):
        r = invoke(pair.client(server), name, {}, params={"wait": 30}).json()
        assert r["output"] == {"v": 2} and r["version"] == 2, r


def test_a_key_revoked_on_one_replica_is_refused_on_the_other(pair: Pair) -> None:
    from serve_app.platform import KEY_CACHE_S

    made = pair.client(pair.a).post("/v1/keys", json={"tenant": "default", "role": "viewer", "name": "rep-rev"})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{pair.b.url}/v1/functions", headers=headers).status_code == 200  # B caches the key
    assert pair.client(pair.a).delete(f"/v1/keys/{made.json()['id']}").status_code in (200, 204)
    refused_at = None
    deadline = time.monotonic() + KEY_CACHE_S + 1  # the cache's own bound; the revocation's notice is sooner
    while time.monotonic() < deadline:
        if httpx.get(f"{pair.b.url}/v1/functions", headers=headers).status_code == 401:
            refused_at = time.monotonic()
            break
        time.sleep(0.05)
    assert refused_at is not None, "B still accepted a key revoked on A"


def test_an_activation_on_another_replica_answers_once_the_home_has_warm_children(pair: Pair) -> None:
    """A function homed on A, redeployed through B: B answers only once A (told by the change's notice) has
    started the new version's warm children, so the first burst finds them warm."""
    name = pair.homed("warmed", at=pair.a)
    ca, cb = pair.client(pair.a), pair.client(pair.b)

    def call(_: int) -> dict[str, Any]:
        return dict(ca.post(f"/v1/functions/{name}/invocations", params={"wait": 60}, json={"s": 0.5}).json())

    assert deploy(ca, name, files={"main.py": SLEEPER}).status_code == 201
    with ThreadPoolExecutor(4) as ex:  # version 1's traffic on its home: four calls at once
        assert all(r["status"] == "succeeded" for r in ex.map(call, range(4)))
    assert deploy(cb, name, files={"main.py": SLEEPER + "# version 2\n"}).status_code == 201
    with ThreadPoolExecutor(4) as ex:
        burst = list(ex.map(call, range(4)))
    assert {(r["status"], r["version"]) for r in burst} == {("succeeded", 2)}, burst
    assert sum(r["metrics"]["cold_start"] for r in burst) == 0, [r["metrics"] for r in burst]


def test_a_dead_replicas_tasks_are_taken_over_by_the_other(pair: Pair, database_url: str) -> None:
    name = pair.homed("rep-die", pair.b)
    assert deploy(pair.client(pair.a), name, files={"main.py": SLEEPER},
                  config={"max_concurrency": 1, "max_batch": 1, "max_retries": 0}).status_code == 201
    ids = [invoke(pair.client(pair.a), name, {"n": i, "s": 1.5}).json()["task_id"] for i in range(6)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # B runs the first of them
        states = {r[0] for r in sql(database_url, "SELECT status FROM tasks WHERE id = ANY(:ids)", ids=ids)}
        if "running" in states:
            break
        time.sleep(0.1)
    pair.b.stop()  # its event loop ends: nothing it held is written by it any more, its lease stops
    assert not pair.b.thread.is_alive()
    records = wait_terminal(pair.client(pair.a), ids, timeout_s=LEASE_S + 90)
    statuses = [records[i]["status"] for i in ids]
    lost = [records[i] for i in ids if records[i]["status"] == "failed"]
    assert all(r["error"]["type"] == "ExecutorLost" for r in lost), lost
    assert len(lost) <= 1, "only the one running at the kill (max_concurrency 1) may be lost"
    assert statuses.count("succeeded") >= 5
    owners = {r[0] for r in sql(database_url, "SELECT owner FROM tasks WHERE id = ANY(:ids) AND status ="
                                              " 'succeeded' AND finished_at > now() - interval '5 minutes'", ids=ids)}
    assert pair.a.platform.replica_id in owners, "replica A ran the tasks it took over"
    runs = dict(sql(database_url, "SELECT task_id, count(*) FROM execution_metrics WHERE task_id = ANY(:ids)"
                                  " GROUP BY task_id", ids=ids))
    assert all(n == 1 for n in runs.values()), runs
    assert pair.lapses == []

