"""Warm before the burst: a version's warm children are started at its activation (deploy, activate, rollback),
as many as the function's calls ran at once lately, so its first calls are not cold starts (a function without
recent traffic gets one)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import deploy

SLOW = "import time\n\ndef handler(event, context):\n    time.sleep(event.get('s', 0))\n    return {'v': %d}\n"


def call(api: httpx.Client, name: str, s: float = 0.0) -> dict[str, Any]:
    r = api.post(f"/v1/functions/{name}/invocations", params={"wait": 60}, json={"s": s})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_new_function_without_traffic_gets_one_child_ahead_of_demand(api: httpx.Client) -> None:
    assert deploy(api, "prewarm-new", files={"main.py": SLOW % 1}).status_code == 201
    assert call(api, "prewarm-new")["metrics"]["cold_start"] is False  # its one child, started at deploy
    with ThreadPoolExecutor(2) as ex:
        pair = list(ex.map(lambda _: call(api, "prewarm-new", 0.5), range(2)))
    assert sorted(r["metrics"]["cold_start"] for r in pair) == [False, True]  # the second starts on demand


def test_the_next_version_gets_as_many_warm_children_as_its_traffic_used(api: httpx.Client) -> None:
    assert deploy(api, "prewarm-next", files={"main.py": SLOW % 1}).status_code == 201
    with ThreadPoolExecutor(6) as ex:  # traffic of version 1: six calls at once
        list(ex.map(lambda _: call(api, "prewarm-next", 0.5), range(6)))
    assert deploy(api, "prewarm-next", files={"main.py": SLOW % 2}).status_code == 201
    with ThreadPoolExecutor(6) as ex:
        burst = list(ex.map(lambda _: call(api, "prewarm-next", 0.5), range(6)))
    assert {r["output"]["v"] for r in burst} == {2}
    assert sum(r["metrics"]["cold_start"] for r in burst) == 0, [r["metrics"] for r in burst]
    rolled = api.post("/v1/functions/prewarm-next/rollback", json={})
    assert rolled.status_code == 200, rolled.text
    assert call(api, "prewarm-next")["metrics"]["cold_start"] is False  # version 1's children, started again
