"""Density: what keeping N functions warm costs, by proportional set size (shared pages counted once).

    .venv/bin/python -m bench.density [--n 10 50 200] [--idle-s 15] [--burst 8] [--budget-mb M]
                                      [--baseline-tree /path/to/main] [--min-available-mib 4096]

For each N: start the platform as `cloudfn up` does, deploy N small functions of a few kinds, call each a few
times, burst a few of them, let the platform go idle, then read PSS (`/proc/<pid>/smaps_rollup`) of every
process of this platform, by kind (API replica, detector shards, alert dispatcher, Ray workers holding
functions, idle Ray workers, express lanes, sandboxed children, PostgreSQL, Ray/Serve's own processes), and
per warm function, and the host's warm state from /metrics. Then the latency of warm calls (the most recently
used functions), of the least recently used function (evicted first: with `--budget-mb` small enough, its call
is a cold start after eviction) and of a function never called. Prints JSON lines, then a table.

The host is shared: warming stops early when the machine's available memory falls under
`--min-available-mib` (a tree that keeps a Ray worker per version cannot hold 200 functions on 24 GiB); the
run then reports how many functions it warmed (`warmed`) and per-function figures are divided by that count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.platform_proc import PlatformProcess, zip_handler

KINDS = {
    "echo": "def handler(event, context):\n    return event\n",
    "json": ("import json\n"
             "def handler(event, context):\n"
             "    doc = json.loads(json.dumps({'items': list(range(200)), 'event': event}))\n"
             "    return {'n': len(doc['items'])}\n"),
    "compute": ("import hashlib\n"
                "def handler(event, context):\n"
                "    h = b'x'\n"
                "    for _ in range(2000):\n"
                "        h = hashlib.sha256(h).digest()\n"
                "    return {'h': h.hex()}\n"),
    "sleep": ("import time\n"
              "def handler(event, context):\n"
              "    time.sleep(0.02)\n"
              "    return {'ok': True}\n"),
}


SAMPLES = 5  # least recently used and never-called functions timed (one call each; medians reported)


def emit(**kw: Any) -> None:
    """One JSON line."""
    print(json.dumps(kw), flush=True)


def pss_kib(pid: int) -> int:
    """Proportional set size of one process in KiB (0 if it is gone or unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def kind_of(cmd: str, name: str) -> str:
    """The platform's process kinds, told apart by command line."""
    rules = [("ServeReplica:cloudfn", "api_replica"), ("DetectorShard", "detector"),
             ("AlertDispatcher", "alert_dispatcher"), ("WarmExecutor", "express_lane"), ("WarmHost", "warm_host"),
             ("ray::execute", "ray_worker_fn"), ("ray::IDLE", "ray_worker_idle"),
             ("bootstrap", "sandbox_child"), ("bwrap", "sandbox_child"), ("postgres", "postgresql"),
             ("cloudfn up", "launcher")]
    for needle, kind in rules:
        if needle in cmd or needle == name:
            return kind
    return "ray_serve_infra"  # raylet, GCS, dashboard, Serve controller and proxy, HAProxy, agents


def platform_processes(plat: PlatformProcess) -> list[psutil.Process]:
    """The launcher's descendants plus its PostgreSQL (pg_ctl daemonises the postmaster away from it)."""
    from core.db.embedded import data_dir_for

    assert plat.proc is not None
    root = psutil.Process(plat.proc.pid)
    procs = [root, *root.children(recursive=True)]
    data = str(data_dir_for(plat.home))
    seen = {p.pid for p in procs}
    for p in psutil.process_iter(["cmdline"]):
        if p.pid in seen:
            continue
        if data in " ".join(p.info.get("cmdline") or []):
            procs.extend([p, *p.children(recursive=True)])
    return procs


def measure(plat: PlatformProcess) -> dict[str, dict[str, float]]:
    """PSS (MiB) and process count per kind."""
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: {"pss_mib": 0.0, "processes": 0})
    for p in platform_processes(plat):
        try:
            cmd = " ".join(p.cmdline())
            name = p.name()
        except psutil.Error:
            continue
        k = kind_of(cmd, name)
        by_kind[k]["pss_mib"] += pss_kib(p.pid) / 1024
        by_kind[k]["processes"] += 1
    return dict(by_kind)


def deploy(c: httpx.Client, name: str, kind: str) -> None:
    """Deploy one small function."""
    files = {"archive": ("f.zip", zip_handler(KINDS[kind]), "application/zip")}
    r = c.post("/v1/functions", files=files, data={"name": name})
    r.raise_for_status()


def call(c: httpx.Client, name: str) -> float:
    """One `?wait=` invocation; its round trip in ms."""
    t = time.perf_counter()
    r = c.post(f"/v1/functions/{name}/invocations", params={"wait": 60}, json={"x": 1})
    r.raise_for_status()
    assert r.json()["status"] == "succeeded", r.text
    return (time.perf_counter() - t) * 1000


def burst(c: httpx.Client, name: str, n: int) -> None:
    """N asynchronous invocations, then wait until all ended."""
    ids = [c.post(f"/v1/functions/{name}/invocations", json={"i": i}).json()["task_id"] for i in range(n)]
    for tid in ids:
        while c.get(f"/v1/tasks/{tid}").json()["status"] in ("queued", "running"):
            time.sleep(0.05)


def warm_metrics(c: httpx.Client) -> dict[str, float]:
    """The host's warm state from /metrics (absent before issue 16's ledger: empty)."""
    out = {}
    for line in c.get("/metrics").text.splitlines():
        for name in ("cloudfn_warm_functions", "cloudfn_warm_children", "cloudfn_warm_evictions_total"):
            if line.startswith(name + " "):
                out[name.removeprefix("cloudfn_")] = float(line.rsplit(" ", 1)[1])
    return out


def available_mib() -> float:
    """The machine's available memory (MemAvailable), in MiB."""
    return float(psutil.virtual_memory().available) / 2**20


def run(n: int, idle_s: float, burst_n: int, budget_mb: int | None, tree: Path | None = None,
        min_available_mib: float = 0.0) -> dict[str, Any]:
    """One platform, N functions: PSS by kind and per warm function; warm, least recently used and cold
    latency (with a small `budget_mb`, the least recently used function was evicted). Warming stops once the
    machine has less than `min_available_mib` available; `warmed` says how many were."""
    kinds = list(KINDS)
    env = {"CLOUDFN_WARM_MEMORY_MB": str(budget_mb)} if budget_mb else {}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with PlatformProcess(env, **({"root": tree} if tree else {})) as plat, plat.client(timeout=120) as c:
        base = measure(plat)
        names = [f"d{i:03d}-{kinds[i % len(kinds)]}" for i in range(n)]
        t0 = time.perf_counter()
        for i, name in enumerate(names):
            deploy(c, name, kinds[i % len(kinds)])
        for i in range(SAMPLES):
            deploy(c, f"never-called-{i}", kinds[i % len(kinds)])
        deploy_s = time.perf_counter() - t0
        warmed = 0
        for name in names:
            if available_mib() < min_available_mib:
                emit(bench="density", n=n, tree=str(tree or "this"), stopped_warming_at=warmed,
                     available_mib=round(available_mib()))
                break
            for _ in range(3):
                call(c, name)
            warmed += 1
        names = names[:warmed]
        for name in names[: max(1, warmed // 10)]:
            burst(c, name, burst_n)
        time.sleep(idle_s)
        idle = measure(plat)
        state = warm_metrics(c)
        # the least recently used (after the burst ones): the first evicted, if any was; one call each
        lru = [call(c, names[(max(1, warmed // 10) + i) % warmed]) for i in range(SAMPLES)]
        warm = [call(c, names[-1 - (i % 5)]) for i in range(60)]  # the five most recently used
        cold = [call(c, f"never-called-{i}") for i in range(SAMPLES)]
        fn_kinds = ("ray_worker_fn", "ray_worker_idle", "express_lane", "warm_host", "sandbox_child")
        held = sum(idle.get(k, {}).get("pss_mib", 0.0) for k in fn_kinds)
        platform_mib = sum(v["pss_mib"] for k, v in idle.items() if k not in fn_kinds)
        return {"n": n, "warmed": warmed, "tree": str(tree or "this"), "budget_mb": budget_mb,
                "deploy_s": round(deploy_s, 1), "available_mib_idle": round(available_mib()),
                "before_functions": base,
                "idle": idle, "warm_state": state, "functions_mib": round(held, 1),
                "per_warm_function_mib": round(held / warmed, 1), "platform_mib": round(platform_mib, 1),
                "warm_p50_ms": round(statistics.median(warm), 2),
                "lru_ms": round(statistics.median(lru), 1), "lru_all_ms": [round(x, 1) for x in lru],
                "cold_ms": round(statistics.median(cold), 1), "cold_all_ms": [round(x, 1) for x in cold]}


def column(r: dict[str, Any]) -> str:
    """A run's column title: N (warmed/N when it stopped early), `base` for the baseline tree."""
    n = f"N={r['n']}" if r["warmed"] == r["n"] else f"N={r['warmed']}/{r['n']}"
    return n + (" base" if r["tree"] != "this" else "")


def table(results: list[dict[str, Any]]) -> str:
    """The figures side by side, per N."""
    kinds = sorted({k for r in results for k in r["idle"]})
    head = "| kind | " + " | ".join(f"{column(r)} MiB (procs)" for r in results) + " |"
    rows = [head, "|" + "---|" * (len(results) + 1)]
    for k in kinds:
        cells = [f"{r['idle'].get(k, {}).get('pss_mib', 0):.0f} ({r['idle'].get(k, {}).get('processes', 0):.0f})"
                 for r in results]
        rows.append(f"| {k} | " + " | ".join(cells) + " |")
    for label, key in (("functions (workers+lanes+children)", "functions_mib"),
                       ("per warm function", "per_warm_function_mib"), ("platform itself", "platform_mib"),
                       ("warm call p50 ms", "warm_p50_ms"), ("least recently used call p50 ms", "lru_ms"),
                       ("never-called call p50 ms", "cold_ms")):
        rows.append(f"| {label} | " + " | ".join(str(r[key]) for r in results) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[10, 50, 200])
    ap.add_argument("--idle-s", type=float, default=15.0)
    ap.add_argument("--burst", type=int, default=8)
    ap.add_argument("--budget-mb", type=int, default=None, help="CLOUDFN_WARM_MEMORY_MB (default: the platform's)")
    ap.add_argument("--baseline-tree", type=Path, help="for each N, first the same run of a platform from this tree")
    ap.add_argument("--baseline-only", action="store_true", help="with --baseline-tree: only the baseline's runs")
    ap.add_argument("--min-available-mib", type=float, default=4096.0,
                    help="stop warming functions when the machine has less memory available than this")
    args = ap.parse_args()
    results = []
    for n in args.n:
        trees: list[Path | None] = [args.baseline_tree] if args.baseline_tree else []
        if not (args.baseline_tree and args.baseline_only):
            trees.append(None)
        for tree in trees:
            r = run(n, args.idle_s, args.burst, args.budget_mb, tree, args.min_available_mib)
            emit(**{k: v for k, v in r.items() if k != "before_functions"})
            results.append(r)
    print(table(results))


if __name__ == "__main__":
    main()
