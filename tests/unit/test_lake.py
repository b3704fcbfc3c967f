"""The Parquet lake on real files: layout, hive partitions, atomic writes, compaction."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from analytics.lake import FILE_SCHEMA, ParquetLake, written_at
from core.models import MetricRecord

DAY = 86400.0
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC).timestamp()
PART_RE = re.compile(r"^date=\d{4}-\d{2}-\d{2}/function=[a-z0-9-]+/part-\d{8}T\d{12}Z-[0-9a-f]{32}\.parquet$")


def rec(i: int, function: str = "f", finished_at: float = T0, **kw: object) -> MetricRecord:
    """A metric record with distinct figures per i."""
    fields: dict[str, object] = {
        "task_id": f"{function}-{i}",
        "namespace": "default",
        "function": function,
        "version": 1,
        "status": "succeeded" if i % 7 else "failed",
        "started_at": finished_at - 0.01 * (i % 50),
        "finished_at": finished_at,
        "duration_ms": 10.0 * (i % 50),
        "cpu_ms": 1.5 * i,
        "peak_memory_mb": 20.0 + i % 13,
        "queue_ms": 0.5,
        "cold_start": i % 10 == 0,
        "error_type": None if i % 7 else "ValueError",
    }
    fields.update(kw)
    return MetricRecord(**fields)  # type: ignore[arg-type]


def read_all(lake: ParquetLake, where: str = "true") -> list[tuple[object, ...]]:
    """Rows through a plain DuckDB connection, as an outside user would read them."""
    con = duckdb.connect()
    try:
        return con.execute(
            f"SELECT task_id, function, CAST(date AS VARCHAR), duration_ms FROM read_parquet('{lake.glob()}',"
            f" hive_partitioning = true) WHERE {where} ORDER BY task_id"
        ).fetchall()
    finally:
        con.close()


def fill(lake: ParquetLake) -> list[MetricRecord]:
    """Three append calls over two functions and three UTC days; returns what was written."""
    written: list[MetricRecord] = []
    i = 0
    for call in range(3):
        batch: list[MetricRecord] = []
        for day in range(3):
            for fn in ("f", "g"):
                for _ in range(5 + call):
                    batch.append(rec(i, fn, T0 + day * DAY + i))
                    i += 1
        lake.append(batch)
        written += batch
    return written


def test_rows_come_back_exactly_with_partition_columns(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path / "lake")
    written = fill(lake)
    rows = read_all(lake, "function = 'f'")
    expected = sorted(
        (r.task_id, "f", datetime.fromtimestamp(r.finished_at, UTC).date().isoformat(), r.duration_ms)
        for r in written
        if r.function == "f"
    )
    assert rows == expected
    assert len(read_all(lake)) == len(written)


def test_layout_one_file_per_date_and_function_per_call(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    paths = lake.append([rec(i, fn, T0 + d * DAY) for i in range(4) for d in range(2) for fn in ("a", "b")])
    assert len(paths) == 4
    for p in paths:
        assert PART_RE.match(p.relative_to(tmp_path).as_posix()), p
    assert sorted(paths) == lake.files()
    # Partition columns are not stored in the file; timestamps are µs UTC; zstd.
    meta = pq.ParquetFile(paths[0])
    assert meta.schema_arrow == FILE_SCHEMA
    assert meta.metadata.row_group(0).column(0).compression == "ZSTD"


def test_types_seen_by_duckdb(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    lake.append([rec(1, "123")])  # an all-digit name: hive_types keeps it a string
    con = duckdb.connect()
    got = con.execute(
        f"SELECT typeof(function), typeof(date), typeof(finished_at), function, epoch_us(finished_at)"
        f" FROM read_parquet('{lake.glob()}', hive_partitioning = true,"
        " hive_types = {'date': DATE, 'function': VARCHAR})"
    ).fetchall()
    assert got == [("VARCHAR", "DATE", "TIMESTAMP WITH TIME ZONE", "123", round(T0 * 1e6))]


def test_file_uri_and_bad_input(tmp_path: Path) -> None:
    lake = ParquetLake(f"file://{tmp_path}/l")
    assert lake.root == tmp_path / "l"
    assert lake.glob() == f"{tmp_path}/l/**/*.parquet"
    with pytest.raises(ValueError, match="not supported"):
        ParquetLake("s3://bucket/lake")
    with pytest.raises(ValueError, match="invalid function name"):
        lake.append([rec(1, "../escape")])
    assert not (tmp_path / "l").exists()


def test_missing_and_empty_lake(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path / "nothing-here")
    assert lake.files() == [] and lake.dates() == []
    assert lake.compact() == 0
    assert lake.append([]) == []


def test_readers_never_see_partial_files(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path, fsync=False)
    batch, batches = 200, 25
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        con = duckdb.connect()
        while not done.is_set():
            try:
                if lake.files():
                    row = con.execute(f"SELECT count(*) FROM read_parquet('{lake.glob()}')").fetchone()
                    seen.append(row[0] if row else -1)
            except duckdb.IOException:
                pass  # nothing there yet
            except BaseException as e:  # a partial file would show up here as an invalid-Parquet error
                errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for b in range(batches):
            lake.append([rec(b * batch + i) for i in range(batch)])
    finally:
        done.set()
        t.join()
    assert not errors
    assert seen and all(n % batch == 0 for n in seen)
    assert not list(tmp_path.rglob("*.tmp"))


def test_temp_files_are_invisible_and_stale_ones_removed(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    (p,) = lake.append([rec(1)])
    crashed = p.parent / f".{p.name}.tmp"
    crashed.write_bytes(b"PAR1 half a file")
    assert lake.files() == [p]
    assert [r[0] for r in read_all(lake)] == ["f-1"]
    lake.append([rec(2)])
    os.utime(crashed, (T0, T0))  # old enough to be a crash leftover
    assert lake.compact() == 2
    assert not crashed.exists()


def test_compaction_keeps_rows_exact(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    fill(lake)
    everything = f"SELECT * FROM read_parquet('{lake.glob()}', hive_partitioning = true)"
    before = duckdb.connect().execute(everything)
    cols = [d[0] for d in before.description]
    rows_before = sorted(before.fetchall(), key=repr)
    assert len(lake.files()) == 18  # 3 calls x 3 days x 2 functions

    first_day = lake.dates()[0]
    assert lake.compact(first_day) == 6  # 3 files each for f and g on that day
    assert len(lake.files()) == 14
    assert lake.compact() == 12
    assert len(lake.files()) == 6
    assert lake.compact() == 0  # already one file per partition

    after = duckdb.connect().execute(everything)
    assert [d[0] for d in after.description] == cols
    assert sorted(after.fetchall(), key=repr) == rows_before
    # Still appendable after compaction.
    lake.append([rec(10_000, "f", T0)])
    assert len(read_all(lake, "task_id = 'f-10000'")) == 1


def test_concurrent_compactions_do_not_duplicate(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    for i in range(20):
        lake.append([rec(i)])
    removed: list[int] = []
    threads = [threading.Thread(target=lambda: removed.append(lake.compact())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(removed) == [0, 0, 0, 20]
    assert len(read_all(lake)) == 20


def test_compaction_is_size_tiered(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    for i in range(3):
        lake.append([rec(i)])
    assert lake.compact(min_files=4) == 0  # too few small files yet
    assert lake.compact() == 3
    (merged,) = lake.files()
    lake.append([rec(3)])
    lake.append([rec(4)])
    target = merged.stat().st_size  # the merged file is now "big": it is left as it is
    assert lake.compact(target_bytes=target) == 2
    assert merged in lake.files() and len(lake.files()) == 2
    assert [r[0] for r in read_all(lake)] == [f"f-{i}" for i in range(5)]


def test_readers_under_reading_see_exact_rows_during_compaction(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path, fsync=False)
    n = 0
    for _ in range(60):
        lake.append([rec(n + i) for i in range(10)])
        n += 10
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        con = duckdb.connect()
        try:
            while not done.is_set():
                with lake.reading():
                    files = [str(p) for p in lake.files()]
                    row = con.execute(
                        "SELECT count(*), count(DISTINCT task_id) FROM read_parquet(?)", [files]
                    ).fetchone()
                assert row is not None and row[0] == row[1], f"duplicates seen: {row}"
                seen.append(row[0])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(20):  # each round: a few more small files, merged with the previous merge
            lake.append([rec(n + i) for i in range(10)])
            lake.append([rec(n + 10 + i) for i in range(10)])
            n += 20
            assert lake.compact() >= 2
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors
    assert seen and all(600 <= c <= n and c % 10 == 0 for c in seen)
    assert len(read_all(lake)) == n


def test_files_written_after(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    (new,) = lake.append([rec(1)])
    w = written_at(new)
    assert w is not None and abs(w - time.time()) < 60
    old = new.with_name("part-20240301T120000000000Z-" + "0" * 32 + ".parquet")
    foreign = new.with_name("from-another-writer.parquet")
    shutil.copy(new, old)
    shutil.copy(new, foreign)
    assert written_at(old) == T0
    assert written_at(foreign) is None
    assert lake.files(written_after=T0 + 1) == sorted([new, foreign])  # unknown names are always kept
    assert lake.files(written_after=T0) == sorted([new, old, foreign])
