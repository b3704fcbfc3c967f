"""The lake on S3 (CLOUDFN_LAKE_URI=s3://bucket/prefix) against an S3-compatible server started here (moto's
server mode, in its own process on 127.0.0.1): write, list, compact, read back, DuckDB aggregates, retrain's
reader; the same figures as the same rows in a local lake."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from analytics.aggregates import function_metrics, functions_metrics, timeseries
from analytics.jobs.retrain import read_history
from analytics.lake import ParquetLake
from analytics.lakes import open_lake
from analytics.object_lake import ObjectStoreLake, filesystem_for, s3_filesystem
from core.models import MetricRecord, TaskStatus
from core.settings import Settings
from tests.s3_server import MotoS3

BUCKET = "cloudfn-lake"
NOW = 1_780_000_000.0  # a fixed time: rows and windows never depend on the clock


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """moto's S3 server with a bucket, and AWS's variables pointing at it."""
    with MotoS3(BUCKET) as server:
        yield server.env


@pytest.fixture()
def s3_lake(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> ObjectStoreLake:
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    lake = open_lake(f"s3://{BUCKET}/runs/{request.node.name}")
    assert isinstance(lake, ObjectStoreLake)
    return lake


def rec(i: int, function: str = "f", *, finished: float | None = None, status: TaskStatus = TaskStatus.SUCCEEDED,
        namespace: str = "default") -> MetricRecord:
    end = NOW - 3600 + i * 10.0 if finished is None else finished
    return MetricRecord(task_id=f"t{function}{i}", namespace=namespace, function=function, version=1,
                        status=status, started_at=end - 0.1, finished_at=end, duration_ms=10.0 + i,
                        cpu_ms=5.0 + i, peak_memory_mb=20.0 + i % 7, queue_ms=1.0, cold_start=i % 10 == 0,
                        error_type=None if status == TaskStatus.SUCCEEDED else "ValueError",
                        input_bytes=10, output_bytes=20)


def rows(n: int) -> list[MetricRecord]:
    out = [rec(i, status=TaskStatus.FAILED if i % 9 == 0 else TaskStatus.SUCCEEDED) for i in range(n)]
    return out + [rec(i, "g") for i in range(n // 2)]


def test_write_list_read_back_and_aggregate_like_a_local_lake(s3_lake: ObjectStoreLake, tmp_path: Path) -> None:
    local = ParquetLake(tmp_path / "lake", fsync=False)
    batch = rows(120)
    for chunk in (batch[:50], batch[50:100], batch[100:]):  # several files per partition
        s3_lake.append(chunk)
        local.append(chunk)
    assert s3_lake.functions() == ["f", "g"] == local.functions()
    assert s3_lake.dates() == local.dates()
    assert len(s3_lake.files("f")) == len(local.files("f")) == 3
    assert all(str(p).startswith(f"{BUCKET}/runs/") for p in s3_lake.files())

    window = 2 * 3600.0
    remote = function_metrics(s3_lake, "f", window, now=NOW)
    assert remote["count"] == 120 and remote["errors"] == 14
    assert remote == function_metrics(local, "f", window, now=NOW)
    assert timeseries(s3_lake, "g", window, 600.0, now=NOW) == timeseries(local, "g", window, 600.0, now=NOW)
    every = functions_metrics(s3_lake, window, now=NOW)
    assert sorted(every) == ["f", "g"] and every["f"]["count"] == 120
    assert {k: v["count"] for k, v in every.items()} == {k: v["count"] for k, v in
                                                        functions_metrics(local, window, now=NOW).items()}


def test_compaction_merges_files_and_keeps_every_row(s3_lake: ObjectStoreLake) -> None:
    batch = rows(60)
    for i in range(0, len(batch), 10):
        s3_lake.append(batch[i:i + 10])
    before = function_metrics(s3_lake, "f", 7200.0, now=NOW)
    n_before = len(s3_lake.files())
    removed = s3_lake.compact()
    assert removed == n_before and len(s3_lake.files()) == 2  # one file per (date, function)
    assert s3_lake.compact() == 0
    assert function_metrics(s3_lake, "f", 7200.0, now=NOW) == before


def test_pending_rows_and_duplicates_are_counted_once(s3_lake: ObjectStoreLake) -> None:
    batch = [rec(i) for i in range(20)]
    s3_lake.append(batch)
    s3_lake.append(batch[:5])  # a retried flush
    m = function_metrics(s3_lake, "f", 7200.0, now=NOW, pending=batch[15:] + [rec(99)])
    assert m["count"] == 21


def test_retrain_reads_history_from_s3(s3_lake: ObjectStoreLake) -> None:
    s3_lake.append([rec(i) for i in range(30)] + [rec(i, namespace="team-b") for i in range(100, 110)])
    history = read_history(s3_lake, "f", days=1.0)
    assert sorted(history) == ["default", "team-b"]
    assert [r.task_id for r in history["default"]] == [f"tf{i}" for i in range(30)]
    assert history["team-b"][0].finished_at == rec(100).finished_at


def test_the_platform_settings_point_at_the_bucket(s3_env: dict[str, str]) -> None:
    s = Settings(lake_uri=f"s3://{BUCKET}/metrics", home=Path("/nonexistent"))
    assert s.lake_location == f"s3://{BUCKET}/metrics"
    assert Settings(lake_uri="file:///srv/lake").lake_location == "/srv/lake"
    assert Settings(home=Path("/h")).lake_location == "/h/lake"


def test_endpoint_and_credentials_come_from_aws_variables() -> None:
    fs = s3_filesystem({"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "eu-west-3",
                        "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    assert fs.region == "eu-west-3"
    with pytest.raises(ValueError, match="both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        s3_filesystem({"AWS_ACCESS_KEY_ID": "k"})
    with pytest.raises(ValueError, match="AWS_ENDPOINT_URL"):
        s3_filesystem({"AWS_ENDPOINT_URL": "ftp://x"})
    _, root = filesystem_for("s3://bucket/a/b/", {})
    assert root == "bucket/a/b"
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        filesystem_for("s3:///nobucket", {})
    assert isinstance(filesystem_for("gs://bucket/p", {})[0], pafs.GcsFileSystem)


def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        open_lake("ftp://host/lake")
    assert isinstance(open_lake(str(Path(os.sep) / "tmp" / "x")), ParquetLake)
