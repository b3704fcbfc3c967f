"""Where a burst's CPU goes, by process kind, per invocation: shared warm hosts against express lanes and Ray
tasks (`CLOUDFN_WARM_HOSTS=0`), optionally against another source tree, all up at once and measured in turn.

    .venv/bin/python -m bench.hot_path_cpu [--n 2000] [--concurrency 128] [--rounds 3] [--baseline-tree DIR]
                                           [--idle-s 20] [--arm NAME:KEY=VALUE,...]

On a 2-core host a burst is CPU-bound, so CPU time per invocation (user + system, from /proc, of every process
of the platform: API replica, hosts, workers, lanes, sandboxed children, PostgreSQL...) is what decides
throughput, and unlike wall time it barely moves with other tenants' load. Prints JSON lines: per round and
arm the invocations/s and the CPU ms per invocation by kind; then medians per arm.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil
import uvloop

from bench.density import kind_of, platform_processes
from bench.httpload import run_many
from bench.platform_proc import PlatformProcess
from bench.throughput import burst_wait


def emit(**kw: Any) -> None:
    """One JSON line."""
    print(json.dumps(kw), flush=True)


def cpu_by_pid(plat: PlatformProcess) -> dict[int, tuple[str, float]]:
    """Every platform process: its kind and CPU seconds so far (user + system)."""
    out = {}
    for p in platform_processes(plat):
        try:
            t = p.cpu_times()
            out[p.pid] = (kind_of(" ".join(p.cmdline()), p.name()), t.user + t.system)
        except psutil.Error:
            continue
    return out


def cpu_burst(plat: PlatformProcess, n: int, concurrency: int) -> dict[str, Any]:
    """One `?wait=` burst of hello; invocations/s and CPU ms per invocation by kind (processes that ended
    during the burst are not counted: the platform's are long-lived)."""
    before = cpu_by_pid(plat)
    figures = burst_wait(plat, n, concurrency)
    after = cpu_by_pid(plat)
    by_kind: dict[str, float] = defaultdict(float)
    for pid, (kind, cpu) in after.items():
        by_kind[kind] += cpu - before.get(pid, (kind, 0.0))[1]
    per_inv = {k: round(v * 1000 / n, 3) for k, v in sorted(by_kind.items())}
    return {"per_s": figures["per_s"], "p50_ms": figures["p50_ms"], "succeeded": figures["succeeded"],
            "cpu_ms_per_invocation": round(sum(by_kind.values()) * 1000 / n, 3), "by_kind": per_inv}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline-tree", type=Path, help="a third arm: a platform from this source tree")
    ap.add_argument("--idle-s", type=float, default=0.0, help="first, each platform's CPU while idle this long")
    ap.add_argument("--arm", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                    help="a further arm: this tree with these environment variables")
    a = ap.parse_args()
    arms: dict[str, PlatformProcess] = {"hosts": PlatformProcess(),
                                        "no_hosts": PlatformProcess({"CLOUDFN_WARM_HOSTS": "0"})}
    for spec in a.arm:  # e.g. hosts_keep_workers:CLOUDFN_IDLE_WORKER_S=600
        name, _, assignments = spec.partition(":")
        arms[name] = PlatformProcess(dict(kv.split("=", 1) for kv in assignments.split(",") if kv))
    if a.baseline_tree is not None:
        arms["baseline_tree"] = PlatformProcess({"PYTHONPATH": str(a.baseline_tree)}, root=a.baseline_tree)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in arms}
    started: list[PlatformProcess] = []
    try:
        for plat in arms.values():
            started.append(plat.__enter__())
        for plat in arms.values():  # steady state: workers, hosts and children as the bursts use them
            warm = [("POST", "/v1/functions/hello/invocations?wait=60", b"{}")] * 1000  # `cloudfn up` deploys it
            uvloop.run(run_many(plat.url, plat.key, warm, a.concurrency))
        if a.idle_s > 0:  # what each platform burns doing nothing (pings, budget ticks, monitoring)
            before = {name: cpu_by_pid(plat) for name, plat in arms.items()}
            time.sleep(a.idle_s)
            for name, plat in arms.items():
                idle: dict[str, float] = defaultdict(float)
                for pid, (kind, cpu) in cpu_by_pid(plat).items():
                    idle[kind] += cpu - before[name].get(pid, (kind, 0.0))[1]
                emit(bench="hot_path_cpu_idle", arm=name, idle_s=a.idle_s,
                     cpu_ms_per_s=round(sum(idle.values()) * 1000 / a.idle_s, 1),
                     by_kind={k: round(v * 1000 / a.idle_s, 1) for k, v in sorted(idle.items())})
        names = list(arms)
        for i in range(a.rounds):
            order = names[i % len(names):] + names[: i % len(names)]  # who goes first rotates by round
            for name in order:
                r = cpu_burst(arms[name], a.n, a.concurrency)
                emit(bench="hot_path_cpu", round=i, arm=name, **r)
                results[name].append(r)
                time.sleep(3)
    finally:
        for plat in started:
            plat.stop()
    med = statistics.median
    for name, rs in results.items():
        kinds = sorted({k for r in rs for k in r["by_kind"]})
        emit(bench="hot_path_cpu_median", arm=name, rounds=len(rs), per_s=med(r["per_s"] for r in rs),
             cpu_ms_per_invocation=med(r["cpu_ms_per_invocation"] for r in rs),
             by_kind={k: med(r["by_kind"].get(k, 0.0) for r in rs) for k in kinds})


if __name__ == "__main__":
    main()
