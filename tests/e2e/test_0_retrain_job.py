"""`cloudfn detect retrain` submits the retrain job to the platform's Ray cluster with `ray job submit`.

Kept in its own module, named to run before any test that starts a Ray driver inside the pytest process:
with such a driver alive, the submission from the CLI subprocess was seen to hang (not yet explained).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bench.platform_proc import PlatformProcess
from tests.e2e.test_platform_cli import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plat() -> Any:
    with PlatformProcess() as p:
        yield p


def test_retrain_runs_as_a_ray_job(plat: PlatformProcess) -> None:
    with plat.client(timeout=30) as c:
        for i in range(30):
            c.post("/v1/functions/hello/invocations", params={"wait": 10}, json={"name": str(i)})
    time.sleep(3)  # the lake flushes every 2 s
    out = cli(plat, "detect", "retrain").stdout
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    hello = [x for x in lines if x.get("function") == "hello"]
    assert hello and hello[0]["rows"] >= 30
    assert any(x.get("summary") and x["failed"] == 0 for x in lines)
