"""Time the retrain job on a synthetic lake: `--functions` functions x `--rows` executions each.

    .venv/bin/python -m bench.detection.retrain [--functions 10] [--rows 5000] [--database-url URL]
Without --database-url an embedded PostgreSQL is started in a temporary folder (and stopped after).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from analytics.jobs.retrain import main as retrain_main
from analytics.lake import ParquetLake
from core.models import MetricRecord


def fill(lake: ParquetLake, functions: int, rows: int, spacing: float = 6.0) -> None:
    """Write `rows` executions of each function (two versions, 1% cold starts), in files of 500 rows."""
    rng = np.random.default_rng(0)
    t0 = 1_700_000_000.0
    for k in range(functions):
        base = float(rng.uniform(5, 200))
        recs = []
        for i in range(rows):
            t = t0 + i * spacing
            cold = i % 100 == 0
            dur = base * float(rng.lognormal(0, 0.1)) * (8.0 if cold else 1.0)
            recs.append(MetricRecord(f"b{k}-{i}", "default", f"bench-{k}", 1 + 2 * i // rows, "succeeded",
                                     t - dur / 1e3, t, dur, dur * 0.8, 40 + float(rng.normal(0, 0.5)), 1.0, cold,
                                     None, 100, 50))
        for j in range(0, rows, 500):
            lake.append(recs[j:j + 500])


def main() -> None:
    """Fill a lake, run the job in-process, print its lines and the wall time."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--functions", type=int, default=10)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="retrain-bench-") as d:
        server = None
        url = args.database_url
        if not url:
            from core.db.embedded import EmbeddedPostgres
            from core.db.migrate import upgrade

            server = EmbeddedPostgres(Path(d) / "pgdata")
            url = server.start()
            upgrade(url)
        lake = ParquetLake(Path(d) / "lake", fsync=False)
        fill(lake, args.functions, args.rows)
        import alibi_detect.od  # noqa: F401  (one-off import cost, not the job's per-function cost)

        out = io.StringIO()
        t0 = time.perf_counter()
        rc = retrain_main(["--lake", str(lake.root), "--database-url", url], out=out)
        wall = time.perf_counter() - t0
        print(out.getvalue(), end="")
        print(json.dumps({"exit": rc, "functions": args.functions, "rows_each": args.rows,
                          "wall_seconds": round(wall, 2)}))
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
