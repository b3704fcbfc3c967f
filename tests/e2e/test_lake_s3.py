"""The platform started as `cloudfn up` with CLOUDFN_LAKE_URI=s3://… on an S3-compatible server (moto, its own
process): every invocation's metrics row lands in the bucket, and the metrics route's aggregates agree with
DuckDB over the bucket read from here."""

from __future__ import annotations

import time

import pytest

from analytics.aggregates import function_metrics
from analytics.lakes import open_lake
from bench.platform_proc import PlatformProcess
from tests.s3_server import MotoS3

pytestmark = pytest.mark.slow
BUCKET = "platform-lake"
N = 12


def test_up_writes_its_lake_to_the_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    with MotoS3(BUCKET) as s3:
        uri = f"s3://{BUCKET}/metrics"
        with PlatformProcess(extra_env={"CLOUDFN_LAKE_URI": uri, **s3.env}) as plat, plat.client(timeout=60) as c:
            ids = []
            for i in range(N):
                rec = c.post("/v1/functions/hello/invocations", params={"wait": "60"}, json={"name": f"n{i}"})
                assert rec.status_code == 200 and rec.json()["status"] == "succeeded", rec.text
                ids.append(rec.json()["task_id"])
            for k, v in s3.env.items():
                monkeypatch.setenv(k, v)
            lake = open_lake(uri)
            seen = 0
            for _ in range(120):  # the feed flushes every CLOUDFN_LAKE_FLUSH_S (2 s)
                seen = function_metrics(lake, "hello", 3600.0)["count"]
                if seen >= N:
                    break
                time.sleep(0.5)
            assert seen == N
            assert all(str(p).startswith(f"{BUCKET}/metrics/date=") for p in lake.files("hello"))
            api = c.get("/v1/functions/hello/metrics", params={"window": "1h"}).json()
            assert api["count"] == N and api["errors"] == 0
            assert api["duration_ms"]["p95"] == pytest.approx(function_metrics(lake, "hello", 3600.0)
                                                              ["duration_ms"]["p95"])
