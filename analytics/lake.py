"""The Parquet metrics lake: hive-partitioned files of MetricRecord rows, written atomically.

Layout: ``<root>/date=YYYY-MM-DD/function=<name>/part-<utc time>-<uuid>.parquet``. ``date`` (UTC day of
``finished_at``) and ``function`` are partition columns: they live only in the path, so any engine reading
with hive partitioning gets them back
(DuckDB: ``read_parquet('<root>/**/*.parquet', hive_partitioning=true)``;
add ``hive_types={'date': DATE, 'function': VARCHAR}`` so an all-digit function name stays a string).

Writers put a file under a dot-prefixed ``.tmp`` name in the target folder and rename it into place, so a
reader's ``*.parquet`` glob never matches a partial file. Compaction writes the merged file the same way and
only then unlinks the inputs. Readers that use ``ParquetLake.reading()`` (the aggregates do) hold a shared
``flock`` while listing and reading; compaction renames its file in and deletes the inputs under the exclusive
lock (behind a "gate" lock, so a steady stream of readers cannot starve it), so these readers see either the
inputs or the merged file, never both and never a vanished file. Other readers (a DuckDB shell) may, during
that instant, see a row twice or need to retry; a table format with a manifest (Delta, Iceberg) would close
that gap and is not worth it at this scale. The aggregates deduplicate by ``(task_id, attempt)`` anyway, for
pending rows that are also flushed and for a flush that was retried.

The same layout on object storage (``s3://bucket/prefix``, ``gs://…``) is ``analytics.object_lake``;
``analytics.lakes.open_lake`` picks one from the URI, and readers go through ``Lake`` (the methods both provide).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from core.models import NAME_RE, MetricRecord

if TYPE_CHECKING:
    import duckdb

TIMESTAMP = pa.timestamp("us", tz="UTC")

# Columns stored in each file; `date` and `function` are partition columns and live in the path.
FILE_SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("attempt", pa.int32(), nullable=False),
        pa.field("namespace", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("started_at", TIMESTAMP, nullable=False),
        pa.field("finished_at", TIMESTAMP, nullable=False),
        pa.field("duration_ms", pa.float64(), nullable=False),
        pa.field("cpu_ms", pa.float64(), nullable=False),
        pa.field("peak_memory_mb", pa.float64(), nullable=False),
        pa.field("queue_ms", pa.float64(), nullable=False),
        pa.field("cold_start", pa.bool_(), nullable=False),
        pa.field("error_type", pa.string(), nullable=True),
        pa.field("input_bytes", pa.int64(), nullable=False),
        pa.field("output_bytes", pa.int64(), nullable=False),
    ]
)
# The rows as readers see them: the file columns plus the two partition columns.
ROW_SCHEMA = FILE_SCHEMA.append(pa.field("function", pa.string(), nullable=False)).append(
    pa.field("date", pa.date32(), nullable=False)
)

COMPRESSION = "zstd"
TMP_SUFFIX = ".tmp"
STALE_TMP_S = 3600.0
_STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
_PART_RE = re.compile(
    r"^part-(\d{8}T\d{12}Z)-[0-9a-f]{32}\.parquet$"
)  # compaction removes temp files older than this (left by a crashed writer)


def epoch_to_us(t: float) -> int:
    """Epoch seconds to integer microseconds, rounded (the lake's timestamp unit)."""
    return round(t * 1_000_000)


def utc_date(t: float) -> date:
    """The UTC calendar day of an epoch time (the `date` partition of a row finished then)."""
    return datetime.fromtimestamp(t, UTC).date()


def records_to_table(records: Sequence[MetricRecord], *, with_partitions: bool = False) -> pa.Table:
    """Convert records to an Arrow table with FILE_SCHEMA (or ROW_SCHEMA, partition columns included)."""
    cols: dict[str, list[object]] = {f.name: [] for f in FILE_SCHEMA}
    for r in records:
        cols["task_id"].append(r.task_id)
        cols["attempt"].append(r.attempt)
        cols["namespace"].append(r.namespace)
        cols["version"].append(r.version)
        cols["status"].append(str(r.status))
        cols["started_at"].append(epoch_to_us(r.started_at))
        cols["finished_at"].append(epoch_to_us(r.finished_at))
        cols["duration_ms"].append(float(r.duration_ms))
        cols["cpu_ms"].append(float(r.cpu_ms))
        cols["peak_memory_mb"].append(float(r.peak_memory_mb))
        cols["queue_ms"].append(float(r.queue_ms))
        cols["cold_start"].append(bool(r.cold_start))
        cols["error_type"].append(r.error_type)
        cols["input_bytes"].append(int(r.input_bytes))
        cols["output_bytes"].append(int(r.output_bytes))
    schema = FILE_SCHEMA
    if with_partitions:
        cols["function"] = [r.function for r in records]
        cols["date"] = [utc_date(r.finished_at) for r in records]
        schema = ROW_SCHEMA
    return pa.table(cols, schema=schema)


# DuckDB's options for reading the lake's files: the partition columns typed (an all-digit name stays a string)
HIVE_OPTIONS = "hive_partitioning = true, hive_types = {'date': DATE, 'function': VARCHAR}"


class Lake(Protocol):
    """What the lake's writers and readers use, whichever storage holds it."""

    @property
    def uri(self) -> str:
        """Where the lake is, as CLOUDFN_LAKE_URI would say it."""
        ...

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold while listing and reading files."""
        ...

    def dates(self) -> list[str]:
        """Dates with a partition, oldest first."""
        ...

    def functions(self) -> list[str]:
        """Function names with a partition, sorted."""
        ...

    def files(self, function: str | None = None, days: Iterable[date | str] | None = None, *,
              written_after: float | None = None) -> Sequence[PurePath]:
        """Data files, optionally one function's, some days', newer ones."""
        ...

    def source(self, con: duckdb.DuckDBPyConnection, files: Sequence[PurePath]) -> tuple[str, list[Any]]:
        """A DuckDB table expression reading `files` with the partition columns, and its parameters."""
        ...

    def append(self, records: Sequence[MetricRecord]) -> Sequence[PurePath]:
        """Write records, one new file per (date, function)."""
        ...

    def compact(self, date: str | None = None, *, min_files: int = 2, target_bytes: int = 64 << 20) -> int:
        """Merge small files per partition; returns files removed."""
        ...

    @staticmethod
    def days_between(start: float, end: float) -> list[date]:
        """Every UTC day from `start`'s to `end`'s."""
        ...


def partition_folder(function: str, day: date | str) -> str:
    """A partition's relative folder, ``date=…/function=…`` (both checked)."""
    _check_function(function)
    d = day if isinstance(day, str) else day.isoformat()
    date.fromisoformat(d)  # validates
    return f"date={d}/function={function}"


def group_by_partition(records: Sequence[MetricRecord]) -> list[tuple[str, pa.Table]]:
    """Records as one table per partition folder, each sorted by finish time (tighter row-group statistics)."""
    groups: dict[tuple[date, str], list[MetricRecord]] = defaultdict(list)
    for r in records:
        _check_function(r.function)
        groups[(utc_date(r.finished_at), r.function)].append(r)
    out = []
    for (day, function), rows in sorted(groups.items()):
        rows.sort(key=lambda r: r.finished_at)
        out.append((partition_folder(function, day), records_to_table(rows)))
    return out


def _root_from(root: Path | str) -> Path:
    """Accept a local path or a ``file://`` URI; other schemes are not supported yet."""
    if isinstance(root, Path):
        return root
    parsed = urlparse(root)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URI with a host is not supported: {root!r}")
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter would be a Windows drive
        raise ValueError(f"lake URI scheme {parsed.scheme!r} is not supported (a local path, file://, "
                         "s3://bucket/prefix or gs://bucket/prefix)")
    return Path(root)


def _check_function(function: str) -> None:
    """Refuse a function name that is not a platform name (it becomes a folder name)."""
    if not NAME_RE.match(function):
        raise ValueError(f"invalid function name for the lake: {function!r}")


def _part_name() -> str:
    """A new data file name: sortable by write time, unique by UUID."""
    return f"part-{datetime.now(UTC).strftime(_STAMP_FORMAT)}-{uuid.uuid4().hex}.parquet"


def written_at(path: PurePath) -> float | None:
    """The write time in a data file's name, as epoch seconds (None for a name this module did not make)."""
    m = _PART_RE.match(path.name)
    if m is None:
        return None
    return datetime.strptime(m.group(1), _STAMP_FORMAT).replace(tzinfo=UTC).timestamp()


class ParquetLake:
    """The metrics lake rooted at a local folder."""

    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        self.root = _root_from(root).absolute()
        self.fsync = fsync
        self._compact_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ParquetLake({str(self.root)!r})"

    @property
    def uri(self) -> str:
        """The lake's folder."""
        return str(self.root)

    def source(self, con: duckdb.DuckDBPyConnection, files: Sequence[PurePath]) -> tuple[str, list[Any]]:
        """DuckDB's own Parquet reader over the files."""
        return f"read_parquet(?, {HIVE_OPTIONS})", [[str(f) for f in files]]

    def functions(self) -> list[str]:
        """Every function name that has a partition folder, sorted."""
        if not self.root.is_dir():
            return []
        names = {p.name[len("function="):] for p in self.root.glob("date=*/function=*") if p.is_dir()}
        return sorted(n for n in names if NAME_RE.match(n))

    # -- paths -----------------------------------------------------------------------------------

    def glob(self) -> str:
        """The glob matching every data file, for ``read_parquet(..., hive_partitioning=true)``."""
        return f"{self.root}/**/*.parquet"

    def partition_dir(self, day: date | str, function: str) -> Path:
        """The folder holding one function's files for one UTC day."""
        return self.root / partition_folder(function, day)

    def dates(self) -> list[str]:
        """The dates that have a partition folder, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[5:] for p in self.root.glob("date=*") if p.is_dir())

    def files(
        self,
        function: str | None = None,
        days: Iterable[date | str] | None = None,
        *,
        written_after: float | None = None,
    ) -> list[Path]:
        """Data files (no temp files), optionally only one function's, only some days', only newer ones.

        `written_after` skips files whose name says they were written before that epoch time: a file holds
        only rows that had finished when it was written (compaction's file takes the compaction's time), so a
        window starting at T needs no file written before T minus the clock skew between nodes.
        """
        if function is not None:
            _check_function(function)
        if not self.root.is_dir():
            return []
        day_names = self.dates() if days is None else [str(d) for d in days]  # date's str() is ISO
        fn = "*" if function is None else f"function={function}"
        out: list[Path] = []
        for d in day_names:
            out.extend(sorted((self.root / f"date={d}").glob(f"{fn}/*.parquet")))
        if written_after is not None:
            out = [p for p in out if (w := written_at(p)) is None or w >= written_after]
        return out

    @staticmethod
    def days_between(start: float, end: float) -> list[date]:
        """Every UTC day from the one containing `start` to the one containing `end`."""
        first, last = utc_date(start), utc_date(end)
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    # -- writing ---------------------------------------------------------------------------------

    def _write_atomic(
        self,
        table: pa.Table,
        folder: Path,
        publish: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
    ) -> Path:
        """Write `table` as a new file in `folder`: temp name, optional fsync, rename (inside `publish()`)."""
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / _part_name()
        tmp = folder / f".{final.name}{TMP_SUFFIX}"
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(table, fh, compression=COMPRESSION)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            with publish() if publish else contextlib.nullcontext():
                os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return final

    def append(self, records: Sequence[MetricRecord]) -> list[Path]:
        """Write records, one new file per (date, function) group; returns the files written."""
        return [self._write_atomic(table, self.root / folder) for folder, table in group_by_partition(records)]

    # -- compaction ------------------------------------------------------------------------------

    def _lock_fd(self, name: str) -> int | None:
        """Open (creating) a lock file in the root; None where that is not possible (a read-only lake)."""
        try:
            return os.open(self.root / name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the lake's compaction lock (threads of this process and other processes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._compact_lock, open(self.root / ".compact.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """While held, compaction deletes no file, so files listed inside stay readable."""
        fds = [fd for fd in (self._lock_fd(".gate.lock"), self._lock_fd(".readers.lock")) if fd is not None]
        try:
            if len(fds) == 2:
                fcntl.flock(fds[0], fcntl.LOCK_SH)  # waits while a compaction is deleting
                fcntl.flock(fds[1], fcntl.LOCK_SH)
                fcntl.flock(fds[0], fcntl.LOCK_UN)
            yield
        finally:
            for fd in fds:
                os.close(fd)  # releases the locks

    @contextlib.contextmanager
    def _deleting(self) -> Iterator[None]:
        """Wait for current readers (keeping new ones at the gate), for deleting files."""
        gate, readers = self._lock_fd(".gate.lock"), self._lock_fd(".readers.lock")
        try:
            if gate is not None and readers is not None:
                fcntl.flock(gate, fcntl.LOCK_EX)
                fcntl.flock(readers, fcntl.LOCK_EX)
            yield
        finally:
            for fd in (readers, gate):
                if fd is not None:
                    os.close(fd)

    def _compact_partition(self, folder: Path, min_files: int, target_bytes: int) -> int:
        """Merge a partition's files smaller than `target_bytes` into one; returns files removed."""
        now = time.time()
        for tmp in folder.glob(f".*{TMP_SUFFIX}"):  # a crashed writer's leftovers
            with contextlib.suppress(FileNotFoundError):
                if now - tmp.stat().st_mtime > STALE_TMP_S:
                    tmp.unlink()
        inputs = []
        for p in sorted(folder.glob("*.parquet")):
            with contextlib.suppress(FileNotFoundError):
                if p.stat().st_size < target_bytes:
                    inputs.append(p)
        if len(inputs) < max(min_files, 2):
            return 0
        tables = [pq.ParquetFile(p).read().cast(FILE_SCHEMA) for p in inputs]
        merged = pa.concat_tables(tables).sort_by("finished_at")

        @contextlib.contextmanager
        def swap() -> Iterator[None]:
            # Rename the merged file in and delete its inputs while no reader of ours is listing or reading,
            # so such readers see either the inputs or the merged file, never both and never a missing file.
            with self._deleting():
                yield
                for p in inputs:  # only the files read: a file appended meanwhile stays
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()

        self._write_atomic(merged, folder, publish=swap)
        return len(inputs)

    def compact(self, date: str | None = None, *, min_files: int = 2, target_bytes: int = 64 << 20) -> int:
        """Merge small files per partition (of one date, or all) into one; returns files removed.

        Size-tiered, so it is cheap to call often: only files under `target_bytes` are merged, and only
        where there are at least `min_files` of them; a merged file that outgrows the target is left alone.
        Rows are kept exactly as they are (no deduplication).
        """
        if not self.root.is_dir():
            return 0
        days = self.dates() if date is None else [date]
        removed = 0
        with self._exclusive():
            for d in days:
                day_dir = self.root / f"date={d}"
                for folder in sorted(p for p in day_dir.glob("function=*") if p.is_dir()):
                    removed += self._compact_partition(folder, min_files, target_bytes)
        return removed
