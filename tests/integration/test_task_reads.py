"""Results without polling, over real HTTP: the task-read fast path, batch lookups and long-poll waits."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from tests.conftest import deploy

SLEEPER = '''
import time
def handler(event, context):
    time.sleep(event.get("s", 0))
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"i": event.get("i"), "slept": event.get("s", 0)}
'''
FLAKY = '''
def handler(event, context):
    raise RuntimeError("attempt failed")
'''
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")


@pytest.fixture(scope="module")
def sleeper(api_server: Any, admin_key: str) -> str:
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120) as c:
        assert deploy(c, "reads-sleeper", files={"main.py": SLEEPER}).status_code == 201
        assert deploy(c, "reads-blocker", files={"main.py": SLEEPER}, config={"max_batch": 1}).status_code == 201
        assert deploy(c, "reads-flaky", files={"main.py": FLAKY},
                      config={"max_retries": 1, "retry_backoff_s": 0}).status_code == 201
    return "reads-sleeper"


def finished(api: httpx.Client, name: str, event: dict[str, Any]) -> dict[str, Any]:
    r = api.post(f"/v1/functions/{name}/invocations", params={"wait": 60}, json=event)
    assert r.status_code == 200, r.text
    return dict(r.json())


def via_fastapi(api: httpx.Client, task_id: str, **params: Any) -> httpx.Response:
    """The same read through the FastAPI route: an extra query parameter sends it past the fast path."""
    return api.get(f"/v1/tasks/{task_id}", params={**params, "via": "route"})


def test_fast_path_record_is_the_routes_record(api: httpx.Client, sleeper: str) -> None:
    ok = finished(api, sleeper, {"i": 1})
    failed = finished(api, sleeper, {"i": 2, "fail": True})
    retried = finished(api, "reads-flaky", {})
    assert retried["attempt"] == 2 and len(retried["attempts"]) == 1  # a record with the attempts list
    for rec in (ok, failed, retried):
        fast = api.get(f"/v1/tasks/{rec['task_id']}")
        slow = via_fastapi(api, rec["task_id"])
        assert fast.status_code == slow.status_code == 200
        assert fast.json() == slow.json()
        assert fast.json()["status"] == rec["status"] and fast.json()["output"] == rec["output"]
        assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert api.get(f"/v1/tasks/{failed['task_id']}").json()["error"]["type"] == "ValueError"


def test_pipeline_run_record_is_the_same_on_every_read(api: httpx.Client, sleeper: str) -> None:
    r = api.post(f"/v1/functions/{sleeper}/invocations", params={"wait": 60, "then": sleeper}, json={"i": 5})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    run_id = r.json()["task_id"]
    fast = api.get(f"/v1/tasks/{run_id}").json()
    assert fast == via_fastapi(api, run_id).json()
    assert [s["status"] for s in fast["steps"]] == ["succeeded", "succeeded"]
    assert api.post("/v1/tasks/lookup", json={"ids": [run_id]}).json()["tasks"] == [fast]


def test_errors_on_the_fast_path_match_the_route(api: httpx.Client, api_server: Any, sleeper: str) -> None:
    missing = api.get("/v1/tasks/no-such-task")
    assert missing.status_code == 404 and missing.json() == via_fastapi(api, "no-such-task").json()
    assert missing.json()["error"]["code"] == "not_found"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(f"{api_server.url}/v1/tasks/no-such-task", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = httpx.post(f"{api_server.url}/v1/tasks/lookup", json={"ids": []}, headers=headers)
        assert r.status_code == 401
    bad_id = api.get("/v1/tasks/" + "x" * 80)  # too long for a task id: the route's validation answers
    assert bad_id.status_code == 400 and bad_id.json()["error"]["code"] == "invalid_input"


def test_batch_reads_return_the_single_records_in_request_order(api: httpx.Client, sleeper: str) -> None:
    ids = [finished(api, sleeper, {"i": i})["task_id"] for i in range(5)]
    ids.reverse()
    singles = [api.get(f"/v1/tasks/{t}").json() for t in ids]
    asked = [ids[0], "unknown-id", *ids[1:], ids[2]]  # an unknown id is left out; a repeated one repeated
    expected = [singles[0], *singles[1:], singles[2]]
    by_post = api.post("/v1/tasks/lookup", json={"ids": asked})
    assert by_post.status_code == 200 and by_post.json() == {"tasks": expected}
    by_get = api.get("/v1/tasks", params={"ids": ",".join(asked)})
    assert by_get.status_code == 200 and by_get.json() == {"tasks": expected}
    routed = api.get("/v1/tasks", params={"ids": ",".join(asked), "via": "route"})  # FastAPI's route
    assert routed.json() == {"tasks": expected}
    assert api.post("/v1/tasks/lookup", json={"ids": []}).json() == {"tasks": []}
    assert api.get("/v1/tasks", params={"ids": "unknown-a,unknown-b"}).json() == {"tasks": []}
    listed = api.get("/v1/tasks", params={"function": sleeper, "limit": 3}).json()["tasks"]
    assert len(listed) == 3  # the listing without ids is unchanged


@pytest.mark.parametrize(("call", "needle"), [
    (lambda a: a.post("/v1/tasks/lookup", json={"ids": [f"t{i}" for i in range(1001)]}), "at most 1000"),
    (lambda a: a.get("/v1/tasks", params={"ids": ",".join(f"t{i}" for i in range(101))}), "at most 100"),
    (lambda a: a.post("/v1/tasks/lookup", json={"ids": ["ok", "bad id!"]}), "ids[1]"),
    (lambda a: a.post("/v1/tasks/lookup", json={"ids": ["ok", 7]}), "ids[1]"),
    (lambda a: a.post("/v1/tasks/lookup", json=["a"]), '{"ids"'),
    (lambda a: a.post("/v1/tasks/lookup", json={"ids": "a"}), '{"ids"'),
    (lambda a: a.post("/v1/tasks/lookup", json={"ids": [], "extra": 1}), "extra"),
    (lambda a: a.post("/v1/tasks/lookup", content=b"{nope"), "not valid JSON"),
    (lambda a: a.get("/v1/tasks", params={"ids": "a,b c"}), "ids[1]"),
    (lambda a: a.get("/v1/tasks", params={"ids": "a", "limit": 5}), "cannot be combined"),
    (lambda a: a.get("/v1/tasks/some-task", params={"wait": "61"}), "from 0 to 60"),
    (lambda a: a.get("/v1/tasks/some-task", params={"wait": "-1"}), "from 0 to 60"),
    (lambda a: a.get("/v1/tasks/some-task", params={"wait": "soon"}), "from 0 to 60"),
    (lambda a: a.get("/v1/tasks/some-task", params={"wait": "nan"}), "from 0 to 60"),
    (lambda a: a.get("/v1/tasks/some-task", params={"wait": ""}), "from 0 to 60"),
    (lambda a: a.get("/v1/tasks/some-task", params={"wait": "99", "via": "route"}), "from 0 to 60"),
])
def test_bad_reads_get_a_400_with_a_message(api: httpx.Client, call: Any, needle: str) -> None:
    r = call(api)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_input" and needle in r.json()["error"]["message"]


def test_long_poll_answers_when_the_writer_commits_the_end(api: httpx.Client, api_server: Any,
                                                           sleeper: str) -> None:
    completions = api_server.platform.completions
    accepted = api.post(f"/v1/functions/{sleeper}/invocations", json={"i": 7, "s": 2})
    assert accepted.status_code == 202
    tid = accepted.json()["task_id"]
    seen_waiting: list[int] = []
    answer: dict[str, Any] = {}

    def poll() -> None:
        t0 = time.monotonic()
        answer["response"] = api.get(f"/v1/tasks/{tid}", params={"wait": 60})
        answer["elapsed"] = time.monotonic() - t0

    waiter = threading.Thread(target=poll)
    waiter.start()
    while waiter.is_alive():  # the long-poll is registered with the writer's completions while it waits
        seen_waiting.append(completions.waiting())
        time.sleep(0.05)
    waiter.join()
    r = answer["response"]
    assert r.status_code == 200 and r.json()["status"] == "succeeded" and r.json()["output"]["i"] == 7
    assert r.json() == api.get(f"/v1/tasks/{tid}").json()  # the same record as a single read
    assert max(seen_waiting) >= 1 and completions.waiting() == 0
    assert answer["elapsed"] < 50  # woken by the task's end, not by its 60 s deadline


def test_long_poll_gives_the_current_record_at_its_deadline(api: httpx.Client, api_server: Any,
                                                            sleeper: str) -> None:
    accepted = api.post(f"/v1/functions/{sleeper}/invocations", json={"i": 8, "s": 8})
    assert accepted.status_code == 202, accepted.text
    tid = accepted.json()["task_id"]
    r = api.get(f"/v1/tasks/{tid}", params={"wait": 1})
    assert r.status_code == 200 and r.json()["status"] in ("queued", "running") and r.json()["task_id"] == tid, r.text
    again = api.get(f"/v1/tasks/{tid}").json()
    assert set(r.json()) == set(again), (r.json(), again)  # the full record, not a stub
    assert api_server.platform.completions.waiting() == 0
    assert api.get(f"/v1/tasks/{tid}", params={"wait": 0}).json()["status"] in ("queued", "running")
    done = api.get(f"/v1/tasks/{tid}", params={"wait": 60}).json()  # wakes at the end, from the writer
    assert done["status"] == "succeeded" and done["output"] == {"i": 8, "slept": 8}, done


def test_long_poll_of_an_ended_task_answers_at_once_and_unknown_is_404(api: httpx.Client, sleeper: str) -> None:
    rec = finished(api, sleeper, {"i": 9})
    r = api.get(f"/v1/tasks/{rec['task_id']}", params={"wait": 60})
    assert r.status_code == 200 and r.json() == api.get(f"/v1/tasks/{rec['task_id']}").json()
    missing = api.get("/v1/tasks/no-such-task", params={"wait": 5})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_cancelled_task_wakes_its_long_poll(api: httpx.Client, sleeper: str) -> None:
    # max_batch 1: never batched nor on an express lane, so cancelling kills its run at once
    blocker = api.post("/v1/functions/reads-blocker/invocations", json={"s": 20}).json()["task_id"]
    answer: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: answer.update(r=api.get(f"/v1/tasks/{blocker}",
                                                                     params={"wait": 60})))
    waiter.start()
    time.sleep(0.5)
    assert api.post(f"/v1/tasks/{blocker}/cancel").json()["status"] == "cancelled"
    waiter.join(55)
    assert not waiter.is_alive() and answer["r"].json()["status"] == "cancelled"
