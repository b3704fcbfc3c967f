"""Refit every function's detectors from the Parquet lake and store them in `detector_state`.

    python -m analytics.jobs.retrain [--lake PATH] [--database-url URL] [--function NAME] [--days N]
    ray job submit --address <dashboard> -- python -m analytics.jobs.retrain

For each (namespace, function) in the lake: read its newest `--days` days of executions (counted back from
its newest row) with DuckDB, ordered by finish time and deduplicated by (task_id, attempt); load its
FunctionDetectors from `detector_state` (or start a new one); `refit(history)`; write it back. One JSON line
per function on stdout ({"function", "rows", "seconds", ...}) and a summary line; exit status 1 if any
function failed.

Concurrent writers (live DetectorShard actors persisting the same rows) are handled by compare-and-swap on
`updated_at`: the job writes only if the row still has the `updated_at` it read, and otherwise reloads the
newer state, refits it again and retries; a successful write sets `updated_at` to the database's clock, so
an actor that compares it with the `updated_at` it loaded knows its in-memory model is stale.
"""

from __future__ import annotations

import argparse
import json
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import duckdb
from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from analytics.detection.function import FunctionDetectors
from analytics.lake import Lake
from analytics.lakes import open_lake
from core.db.engine import make_engine
from core.db.tables import DetectorState
from core.models import NAME_RE, MetricRecord

DEFAULT_DAYS = 14
DEFAULT_MAX_ROWS = 1_000_000
CAS_RETRIES = 3
_COLS = ("namespace", "version", "status", "started_at", "finished_at", "duration_ms", "cpu_ms", "peak_memory_mb",
         "queue_ms", "cold_start", "error_type", "input_bytes", "output_bytes")


class RetrainError(RuntimeError):
    """A configuration problem the user must fix (printed without a traceback)."""


@dataclass
class Stored:
    """A function's state row as read: the model and the `updated_at` token (None when there was no row)."""

    model: FunctionDetectors
    updated_at: datetime | None
    loaded: bool


# -- configuration ----------------------------------------------------------------------------------

def resolve_database_url(explicit: str | None, database_url: str | None, home: Path) -> str:
    """--database-url, else CLOUDFN_DATABASE_URL, else the URL the platform wrote to `$CLOUDFN_HOME/database.url`."""
    if explicit:
        return explicit
    if database_url:
        return database_url
    path = home / "database.url"
    try:
        url = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        url, mode = "", 0
    if not url:
        raise RetrainError(f"no database: CLOUDFN_DATABASE_URL is unset and {path} does not exist "
                           "(is the platform running?); pass --database-url URL")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: {path} is readable by others (mode {stat.S_IMODE(mode):o}); it should be 0600",
              file=sys.stderr)
    return url


# -- reading the lake -------------------------------------------------------------------------------

def lake_functions(lake: Lake) -> list[str]:
    """Every function name that has a partition folder in the lake, sorted."""
    return lake.functions()


def read_history(lake: Lake, function: str, days: float,
                 max_rows: int = DEFAULT_MAX_ROWS) -> dict[str, list[MetricRecord]]:
    """A function's newest `days` days of executions per namespace, oldest first (at most `max_rows` each)."""
    con = duckdb.connect(":memory:")
    try:
        with lake.reading():
            files = lake.files(function)
            if not files:
                return {}
            table, params = lake.source(con, files)
            newest = con.execute(f"SELECT max(finished_at) FROM {table}", params).fetchone()
            if newest is None or newest[0] is None:
                return {}
            since: datetime = newest[0] - timedelta(days=days)
            first_day = since.date().isoformat()
            files = [f for f in files if f.parent.parent.name[len("date="):] >= first_day]
            table, params = lake.source(con, files)
            cols = ", ".join(f"any_value({c}) AS {c}" for c in _COLS if c != "namespace")
            sql = f"""
                SELECT task_id, attempt, namespace, version, status,
                       epoch_us(started_at) / 1e6 AS started_at, epoch_us(finished_at) / 1e6 AS finished_at,
                       duration_ms, cpu_ms, peak_memory_mb, queue_ms, cold_start, error_type, input_bytes,
                       output_bytes
                FROM (SELECT namespace, task_id, attempt, {cols} FROM {table}
                      WHERE finished_at >= ? GROUP BY namespace, task_id, attempt)
                QUALIFY row_number() OVER (PARTITION BY namespace ORDER BY finished_at DESC, task_id DESC) <= ?
                ORDER BY namespace, finished_at, task_id, attempt
            """
            rows = con.execute(sql, [*params, since, max_rows]).fetchall()
    finally:
        con.close()
    out: dict[str, list[MetricRecord]] = {}
    for (task_id, attempt, namespace, version, status, started, finished, dur, cpu, mem, queue, cold, etype,
         inb, outb) in rows:
        out.setdefault(namespace, []).append(MetricRecord(
            task_id=task_id, namespace=namespace, function=function, version=int(version), status=status,
            started_at=float(started), finished_at=float(finished), duration_ms=float(dur), cpu_ms=float(cpu),
            peak_memory_mb=float(mem), queue_ms=float(queue), cold_start=bool(cold), error_type=etype,
            input_bytes=int(inb), output_bytes=int(outb), attempt=int(attempt)))
    return out


# -- detector_state ---------------------------------------------------------------------------------

def load_state(engine: Engine, namespace: str, function: str, warmup: int) -> Stored:
    """The stored model (or a new one if there is none or it cannot be read) and its `updated_at`."""
    with engine.connect() as conn:
        row = conn.execute(select(DetectorState.state, DetectorState.updated_at).where(
            DetectorState.namespace == namespace, DetectorState.function == function)).first()
    if row is None:
        return Stored(FunctionDetectors(function, warmup=warmup), None, False)
    try:
        return Stored(FunctionDetectors.from_state(row[0]), row[1], True)
    except Exception as exc:  # an unreadable state is replaced by a fresh fit, as the actor would do
        print(f"warning: unreadable detector state of {namespace}/{function} ({exc}); refitting from scratch",
              file=sys.stderr)
        return Stored(FunctionDetectors(function, warmup=warmup), row[1], False)


def store_state(engine: Engine, namespace: str, function: str, state: bytes,
                expected: datetime | None) -> datetime | None:
    """Write `state` only if the row still has `updated_at == expected` (None: only if there is no row).

    Returns the new `updated_at` (the database's clock), or None when another writer got there first.
    """
    with engine.begin() as conn:
        if expected is None:
            ins = pg_insert(DetectorState).values(namespace=namespace, function=function, state=state,
                                                  updated_at=func.clock_timestamp())
            res = conn.execute(ins.on_conflict_do_nothing().returning(DetectorState.updated_at))
        else:
            res = conn.execute(update(DetectorState).where(
                DetectorState.namespace == namespace, DetectorState.function == function,
                DetectorState.updated_at == expected).values(state=state, updated_at=func.clock_timestamp())
                .returning(DetectorState.updated_at))
        row = res.first()
    return None if row is None else row[0]


def retrain_one(engine: Engine, namespace: str, function: str, history: list[MetricRecord],
                warmup: int = 50) -> dict[str, Any]:
    """Load, refit and store one function's detectors (compare-and-swap, retried on a concurrent write)."""
    for attempt in range(1, CAS_RETRIES + 1):
        stored = load_state(engine, namespace, function, warmup)
        used = stored.model.refit(history)
        written = store_state(engine, namespace, function, stored.model.state(), stored.updated_at)
        if written is not None:
            return {"used": used, "generation": stored.model.refit_generation, "had_state": stored.loaded,
                    "attempts": attempt}
    raise RuntimeError(f"{namespace}/{function}: detector_state kept changing under the job ({CAS_RETRIES} tries)")


# -- the program ------------------------------------------------------------------------------------

def _emit(out: TextIO, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj) + "\n")
    out.flush()


def run(lake: Lake, engine: Engine, functions: Sequence[str], days: float, out: TextIO,
        max_rows: int = DEFAULT_MAX_ROWS) -> int:
    """Retrain `functions`; progress lines on `out`; returns the number of failed functions."""
    t_all = time.perf_counter()
    done = failed = total_rows = 0
    for function in functions:
        t0 = time.perf_counter()
        try:
            by_ns = read_history(lake, function, days, max_rows)
        except Exception as exc:
            failed += 1
            _emit(out, {"function": function, "rows": 0, "seconds": round(time.perf_counter() - t0, 3),
                        "error": f"reading the lake: {type(exc).__name__}: {exc}"})
            continue
        read_s = (time.perf_counter() - t0) / max(len(by_ns), 1)  # the read is shared by the namespaces
        for namespace, history in by_ns.items():
            t1 = time.perf_counter()
            line: dict[str, Any] = {"function": function, "namespace": namespace, "rows": len(history)}
            try:
                line.update(retrain_one(engine, namespace, function, history))
                done += 1
            except Exception as exc:
                failed += 1
                line["error"] = f"{type(exc).__name__}: {exc}"
            total_rows += len(history)
            line["seconds"] = round(read_s + time.perf_counter() - t1, 3)
            _emit(out, line)
    _emit(out, {"summary": True, "functions": done, "failed": failed, "rows": total_rows,
                "seconds": round(time.perf_counter() - t_all, 3)})
    return failed


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m analytics.jobs.retrain",
                                 description="Refit every function's anomaly detectors from the Parquet lake.")
    ap.add_argument("--lake", help="lake folder, file://, s3:// or gs:// URI "
                                   "(default: CLOUDFN_LAKE_URI or $CLOUDFN_HOME/lake)")
    ap.add_argument("--database-url", help="SQLAlchemy URL (default: CLOUDFN_DATABASE_URL or "
                                           "$CLOUDFN_HOME/database.url)")
    ap.add_argument("--function", action="append", help="only this function (repeatable)")
    ap.add_argument("--days", type=float, default=DEFAULT_DAYS, help=f"history length (default {DEFAULT_DAYS})")
    ap.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                    help="at most this many newest rows per function")
    args = ap.parse_args(argv)
    if not args.days > 0:
        ap.error("--days must be > 0")
    if args.max_rows < 1:
        ap.error("--max-rows must be >= 1")
    for f in args.function or []:
        if not NAME_RE.match(f):
            ap.error(f"invalid function name {f!r}")
    return args


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point; returns the exit status."""
    from core.settings import Settings

    args = _parse_args(argv)
    stream = out if out is not None else sys.stdout
    settings = Settings()
    try:
        url = resolve_database_url(args.database_url, settings.database_url, settings.home)
    except RetrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lake = open_lake(args.lake if args.lake else settings.lake_location)
    functions = list(args.function) if args.function else lake_functions(lake)
    engine = make_engine(url, pool_size=1)
    try:
        failed = run(lake, engine, functions, args.days, stream, args.max_rows)
    finally:
        engine.dispose()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
