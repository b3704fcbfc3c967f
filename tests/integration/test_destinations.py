"""Completion destinations over real HTTP, PostgreSQL and Ray: signed webhooks to a local receiver, function
destinations, validation, secrets at rest, and redelivery of what a stopped replica left undelivered."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import deploy
from tests.receivers import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"destination-test-secret-32bytes!").decode()
WORKER = '''
def handler(event, context):
    if event.get("fail"):
        raise LookupError("no such order " + str(event.get("order")))
    return {"order": event.get("order")}
'''
SINK = '''
def handler(event, context):
    return {"got": event}
'''


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET)
    yield r
    r.close()


def wait_for(check: Any, timeout_s: float = 60.0) -> Any:
    """Poll a condition of the test's own side (a receiver's list, a table) until it holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def delivery_row(database_url: str, task_id: str) -> dict[str, Any] | None:
    eng = create_engine(database_url)
    with eng.connect() as c:
        row = c.execute(text("SELECT * FROM destination_deliveries WHERE task_id = :t"), {"t": task_id}).mappings()
        out = row.first()
    eng.dispose()
    return None if out is None else dict(out)


def finished(api: httpx.Client, name: str, event: dict[str, Any]) -> dict[str, Any]:
    r = api.post(f"/v1/functions/{name}/invocations", params={"wait": 60}, json=event)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_on_failure_webhook_gets_the_signed_record_with_a_stable_id_across_retries(
        api: httpx.Client, receiver: WebhookReceiver, database_url: str) -> None:
    cfg = {"on_failure": {"type": "webhook", "url": receiver.url, "secret": SECRET}}
    assert deploy(api, "dest-hooked", files={"main.py": WORKER}, config=cfg).status_code == 201
    receiver.fail_first = 2
    before = len(receiver.received)
    ok = finished(api, "dest-hooked", {"order": 1})  # succeeded: no on_success, so nothing is sent
    failed = finished(api, "dest-hooked", {"order": 2, "fail": True})
    assert ok["status"] == "succeeded" and failed["status"] == "failed"
    row = wait_for(lambda: delivery_row(database_url, failed["task_id"]))
    got = receiver.received[before:]
    assert row["status"] == "delivered" and row["tries"] == 3 and row["destination"] == "on_failure"
    assert len(got) == 3  # two 503s, then delivered; nothing for the succeeded task
    assert all(g["verified"] for g in got)  # each try signed over the exact bytes sent
    assert {g["headers"]["webhook-id"] for g in got} == {row["webhook_id"]}  # one id across retries
    assert all(g["headers"]["content-type"] == "application/json" for g in got)
    record = api.get(f"/v1/tasks/{failed['task_id']}").json()
    assert [json.loads(g["body"]) for g in got] == [record] * 3  # the task record, as GET shows it
    assert record["error"]["type"] == "LookupError"
    assert delivery_row(database_url, ok["task_id"]) is None


def test_on_success_function_destination_runs_with_the_record_as_its_event(
        api: httpx.Client, database_url: str) -> None:
    assert deploy(api, "dest-sink", files={"main.py": SINK}).status_code == 201
    cfg = {"on_success": {"type": "function", "name": "dest-sink"}}
    assert deploy(api, "dest-source", files={"main.py": WORKER}, config=cfg).status_code == 201
    rec = finished(api, "dest-source", {"order": 3})
    row = wait_for(lambda: delivery_row(database_url, rec["task_id"]))
    assert row["status"] == "delivered" and row["target"] == "function:dest-sink" and row["target_task_id"]
    sink = api.get(f"/v1/tasks/{row['target_task_id']}", params={"wait": 60}).json()
    assert sink["function"] == "dest-sink" and sink["status"] == "succeeded"
    assert sink["output"] == {"got": api.get(f"/v1/tasks/{rec['task_id']}").json()}
    assert delivery_row(database_url, sink["task_id"]) is None  # the sink has no destination of its own
    failed = finished(api, "dest-source", {"order": 4, "fail": True})  # no on_failure: nothing
    assert delivery_row(database_url, failed["task_id"]) is None


@pytest.mark.parametrize(("dest", "needle"), [
    ({"type": "email", "to": "x@y"}, "on_failure"),
    ({"url": "http://127.0.0.1:9/x", "secret": "s"}, "on_failure"),
    ({"type": "webhook", "secret": "s"}, "url"),
    ({"type": "webhook", "url": "ftp://host/x", "secret": "s"}, "http"),
    ({"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": ""}, "secret"),
    ({"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "whsec_%%%"}, "base64"),
    ({"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s", "extra": 1}, "extra"),
    ({"type": "function", "name": "Not_A_Name"}, "name"),
    ({"type": "function", "name": "no-such-function"}, "no function named"),
    ({"type": "function", "name": "dest-invalid"}, "its own destination"),
    ("http://127.0.0.1:9/x", "on_failure"),
])
def test_bad_destinations_are_a_400_and_deploy_nothing(api: httpx.Client, dest: Any, needle: str) -> None:
    r = deploy(api, "dest-invalid", files={"main.py": WORKER}, config={"on_failure": dest})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_input" and needle in r.json()["error"]["message"], r.text
    assert api.get("/v1/functions/dest-invalid").status_code == 404


def test_webhook_secret_is_sealed_at_rest_and_masked_in_the_api(api: httpx.Client, receiver: WebhookReceiver,
                                                                database_url: str) -> None:
    secret = "plain-destination-secret-" + str(time.time_ns())
    cfg = {"on_success": {"type": "webhook", "url": receiver.url, "secret": secret}}
    assert deploy(api, "dest-masked", files={"main.py": WORKER}, config=cfg).status_code == 201
    shown = api.get("/v1/functions/dest-masked").json()["config"]["on_success"]
    assert shown == {"type": "webhook", "url": receiver.url, "secret": "***"}
    eng = create_engine(database_url)
    with eng.connect() as c:
        stored = c.execute(text("SELECT v.config::text FROM function_versions v JOIN functions f ON f.id ="
                                " v.function_id WHERE f.name = 'dest-masked'")).scalar_one()
    eng.dispose()
    assert secret not in stored and "secret_sealed" in stored
    before = len(receiver.received)
    rec = finished(api, "dest-masked", {"order": 5})  # the sealed secret still signs
    wait_for(lambda: len(receiver.received) > before)
    from analytics.alerting.signing import verify

    last = receiver.received[-1]
    assert verify(secret, last["headers"], last["body"]) and json.loads(last["body"])["task_id"] == rec["task_id"]


def test_a_restart_delivers_what_was_left_undelivered(api: httpx.Client, api_server: Any, receiver: WebhookReceiver,
                                                      database_url: str) -> None:
    """A replica that stopped after committing the end but before recording the delivery: the next start finds
    the task (no delivery row) and sends it again, with the same webhook-id."""
    from core.db.deliveries import DeliveryLog
    from core.db.engine import make_async_engine
    from core.db.functions import FunctionStore
    from core.db.tasks import TaskStore
    from serve_app.catalog.registry import Registry
    from serve_app.feed.destinations import Destinations

    cfg = {"on_failure": {"type": "webhook", "url": receiver.url, "secret": SECRET}}
    assert deploy(api, "dest-restart", files={"main.py": WORKER}, config=cfg).status_code == 201
    failed = finished(api, "dest-restart", {"order": 6, "fail": True})
    first = wait_for(lambda: delivery_row(database_url, failed["task_id"]))
    eng = create_engine(database_url)
    with eng.begin() as c:  # as if the replica had died before writing the row
        c.execute(text("DELETE FROM destination_deliveries WHERE task_id = :t"), {"t": failed["task_id"]})
    eng.dispose()
    before = len(receiver.received)

    async def next_start() -> None:
        engine = make_async_engine(database_url, pool_size=2)
        registry = Registry(FunctionStore(engine), lambda sha, cfg: None, api_server.platform.secrets)

        async def no_invoke(*_: Any) -> str:
            raise AssertionError("a webhook destination invokes no function")

        restarted = Destinations(TaskStore(engine, "jail"), DeliveryLog(engine), registry, no_invoke)
        await restarted.recover()
        await restarted.drain()
        await restarted.close()
        await engine.dispose()

    asyncio.run(next_start())
    again = [g for g in receiver.received[before:] if json.loads(g["body"])["task_id"] == failed["task_id"]]
    assert len(again) == 1 and again[0]["verified"]
    assert again[0]["headers"]["webhook-id"] == first["webhook_id"]
    assert delivery_row(database_url, failed["task_id"])["status"] == "delivered"
