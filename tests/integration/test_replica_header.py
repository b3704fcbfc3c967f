"""Every answer names the API replica that gave it (`X-CloudFn-Replica`), on the routes and the fast paths."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import deploy

ECHO = "def handler(event, context):\n    return event\n"


def test_every_kind_of_answer_carries_the_replica(api_server: Any, api: httpx.Client) -> None:
    assert deploy(api, "replica-echo", files={"main.py": ECHO}).status_code == 201
    accepted = api.post("/v1/functions/replica-echo/invocations", json={"x": 1})  # the invocation fast path
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["task_id"]
    answers = [
        accepted,
        api.get(f"/v1/tasks/{task_id}", params={"wait": 30}),  # the read fast path
        api.post("/v1/tasks/lookup", json={"ids": [task_id]}),
        api.get("/v1/functions"),  # a FastAPI route
        api.get("/v1/functions/no-such-function"),  # a domain error
        api.post("/v1/tasks/lookup", content=b"{not json"),  # a validation error
        httpx.get(f"{api_server.url}/v1/functions"),  # refused: no key
        httpx.post(f"{api_server.url}/v1/functions/replica-echo/invocations", json={}),  # refused on the fast path
        api.get("/healthz"),
    ]
    assert [a.status_code for a in answers] == [202, 200, 200, 200, 404, 400, 401, 401, 200]
    names = {a.headers.get("x-cloudfn-replica") for a in answers}
    assert len(names) == 1 and None not in names and "" not in names, names
    assert all(len(a.headers.get_list("x-cloudfn-replica")) == 1 for a in answers)  # stamped once, not per layer
