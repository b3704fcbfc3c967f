"""The metrics lake on object storage (``s3://bucket/prefix``, ``gs://bucket/prefix``) through pyarrow's filesystems.

Same layout and files as the local lake (``analytics.lake``). An object appears whole when its upload completes,
so files are written under their final name (no temporary name and rename). There are no locks: compaction
writes the merged file and then deletes its inputs, so a reader may, for that instant, see both (the aggregates
deduplicate by ``(task_id, attempt)``) or miss an input it listed (DuckDB's read fails and the aggregates list
again). One compactor at a time: the API replica's monitoring feed.

DuckDB reads these files as a pyarrow dataset registered on its connection (its httpfs extension would be
downloaded at ``INSTALL`` time, which a machine without internet cannot do).

S3 settings are AWS's usual variables: ``AWS_ENDPOINT_URL`` (an S3-compatible server, e.g.
``http://127.0.0.1:9000``), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``) and
``AWS_REGION``; without keys, AWS's default chain (an instance profile, ...). GCS: Google's default credentials.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from pathlib import PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from analytics.lake import (
    COMPRESSION,
    FILE_SCHEMA,
    ROW_SCHEMA,
    ParquetLake,
    _check_function,
    _part_name,
    group_by_partition,
    partition_folder,
    written_at,
)
from core.models import NAME_RE, MetricRecord
from core.settings import LAKE_OBJECT_SCHEMES as OBJECT_SCHEMES

if TYPE_CHECKING:
    import duckdb

PARTITIONING = ds.partitioning(pa.schema([("date", pa.date32()), ("function", pa.string())]), flavor="hive")


def s3_filesystem(env: Mapping[str, str]) -> pafs.S3FileSystem:
    """An S3 filesystem configured from AWS's environment variables."""
    kwargs: dict[str, Any] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"AWS_ENDPOINT_URL: {endpoint!r} is not a URL like http://127.0.0.1:9000")
        kwargs["endpoint_override"] = parts.netloc
        kwargs["scheme"] = parts.scheme
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if bool(key) != bool(secret):
        raise ValueError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (AWS's default chain)")
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret, session_token=env.get("AWS_SESSION_TOKEN") or None)
    return pafs.S3FileSystem(**kwargs)


def filesystem_for(uri: str, env: Mapping[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the root path (``bucket/prefix``) of an s3:// or gs:// lake URI."""
    parts = urlsplit(uri)
    if parts.scheme not in OBJECT_SCHEMES or not parts.netloc:
        raise ValueError(f"lake URI {uri!r} is not like s3://bucket/prefix or gs://bucket/prefix")
    root = f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
    if parts.scheme == "s3":
        return s3_filesystem(os.environ if env is None else env), root
    return pafs.GcsFileSystem(), root


class ObjectStoreLake:
    """The metrics lake under a bucket prefix."""

    def __init__(self, uri: str, *, filesystem: pafs.FileSystem | None = None) -> None:
        fs, self.root = filesystem_for(uri)
        self.fs = filesystem or fs
        self._uri = uri.rstrip("/")
        self._compact_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ObjectStoreLake({self._uri!r})"

    @property
    def uri(self) -> str:
        """The URI it was opened with."""
        return self._uri

    @staticmethod
    def days_between(start: float, end: float) -> list[date]:
        """Every UTC day from the one containing `start` to the one containing `end`."""
        return ParquetLake.days_between(start, end)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Nothing to hold on object storage (see the module's note on compaction)."""
        yield

    def _listing(self, folder: str, recursive: bool) -> list[pafs.FileInfo]:
        """Entries under a folder ([] when it does not exist)."""
        sel = pafs.FileSelector(f"{self.root}/{folder}".rstrip("/"), recursive=recursive, allow_not_found=True)
        return list(self.fs.get_file_info(sel))

    def dates(self) -> list[str]:
        """The dates that have a partition, oldest first."""
        names = (PurePosixPath(i.path).name for i in self._listing("", False) if i.type == pafs.FileType.Directory)
        return sorted(n[5:] for n in names if n.startswith("date="))

    def functions(self) -> list[str]:
        """Every function name that has a partition, sorted."""
        names = set()
        for d in self.dates():
            for i in self._listing(f"date={d}", False):
                name = PurePosixPath(i.path).name
                if i.type == pafs.FileType.Directory and name.startswith("function="):
                    names.add(name[len("function="):])
        return sorted(n for n in names if NAME_RE.match(n))

    def _data_files(self, folder: str) -> list[pafs.FileInfo]:
        """The data files (no hidden names) under a folder, by path."""
        out = [i for i in self._listing(folder, True) if i.type == pafs.FileType.File
               and i.base_name.endswith(".parquet") and not i.base_name.startswith(".")]
        return sorted(out, key=lambda i: i.path)

    def files(self, function: str | None = None, days: Iterable[date | str] | None = None, *,
              written_after: float | None = None) -> list[PurePosixPath]:
        """Data files (``bucket/prefix/date=…/function=…/part-….parquet``), as ``ParquetLake.files``."""
        if function is not None:
            _check_function(function)
        day_names = self.dates() if days is None else [str(d) for d in days]
        out: list[PurePosixPath] = []
        for d in day_names:
            for info in self._data_files(f"date={d}"):
                path = PurePosixPath(info.path)
                if function is None or path.parent.name == f"function={function}":
                    out.append(path)
        if written_after is not None:
            out = [p for p in out if (w := written_at(p)) is None or w >= written_after]
        return out

    def dataset(self, files: Sequence[PurePath]) -> ds.Dataset:
        """The files as one pyarrow dataset with the partition columns (ROW_SCHEMA)."""
        return ds.dataset([str(f) for f in files], schema=ROW_SCHEMA, format="parquet", filesystem=self.fs,
                          partitioning=PARTITIONING, partition_base_dir=self.root)

    def source(self, con: duckdb.DuckDBPyConnection, files: Sequence[PurePath]) -> tuple[str, list[Any]]:
        """The files registered on `con` as a pyarrow dataset (a view private to that connection)."""
        name = f"lake_files_{uuid.uuid4().hex[:12]}"
        con.register(name, self.dataset(files))
        return name, []

    def _write(self, table: pa.Table, folder: str) -> PurePosixPath:
        """Upload `table` as a new file in `folder` (visible only once complete)."""
        path = f"{self.root}/{folder}/{_part_name()}"
        with self.fs.open_output_stream(path) as out:
            pq.write_table(table, out, compression=COMPRESSION)
        return PurePosixPath(path)

    def append(self, records: Sequence[MetricRecord]) -> list[PurePosixPath]:
        """Write records, one new file per (date, function) group; returns the files written."""
        return [self._write(table, folder) for folder, table in group_by_partition(records)]

    def _compact_partition(self, folder: str, min_files: int, target_bytes: int) -> int:
        """Merge a partition's files smaller than `target_bytes` into one; returns files removed."""
        inputs = [i.path for i in self._data_files(folder) if (i.size or 0) < target_bytes]
        if len(inputs) < max(min_files, 2):
            return 0
        tables = []
        for p in inputs:
            with self.fs.open_input_file(p) as fh:
                tables.append(pq.ParquetFile(fh).read().cast(FILE_SCHEMA))
        self._write(pa.concat_tables(tables).sort_by("finished_at"), folder)
        for p in inputs:  # only the files read: a file appended meanwhile stays
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(p)
        return len(inputs)

    def compact(self, date: str | None = None, *, min_files: int = 2, target_bytes: int = 64 << 20) -> int:
        """Merge small files per partition (of one date, or all), as ``ParquetLake.compact``."""
        removed = 0
        with self._compact_lock:
            for d in self.dates() if date is None else [date]:
                partitions = sorted(PurePosixPath(i.path).name for i in self._listing(f"date={d}", False)
                                    if i.type == pafs.FileType.Directory)
                for part in partitions:
                    if part.startswith("function="):
                        folder = partition_folder(part[len("function="):], d)
                        removed += self._compact_partition(folder, min_files, target_bytes)
        return removed
