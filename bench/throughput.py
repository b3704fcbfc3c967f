"""Throughput and latency of the platform against raw Ray running the same handler from the same ZIP.

    .venv/bin/python -m bench.throughput [--n 2000] [--concurrency 64] [--wait-concurrency 128] [--sequential 300]

Prints JSON lines: the platform's end-to-end invocations/s (every execution persisted, counted in
PostgreSQL), submit-to-finish p50/p99, both with `?wait=` (one request per invocation, answered with its
record) and asynchronously (202, then GET until ended); sequential `?wait=` latency; deploy-to-first-result;
then status reads (bench.status_reads): single `GET /v1/tasks/{id}` on the fast path against the same request
through the FastAPI route, batch lookups of 1,000 and 100 records, and learning N results by long-poll against
polling; with `--baseline-tree /work/main`, the same single GETs on a platform started from that source tree
(today's FastAPI GET), up at the same time and measured in turn with this one (with `--baseline-invocations`,
its invocation bursts too, alternating with this platform's round by round); then the floor: N raw Ray
tasks calling the handler directly (no API, no database, no sandbox), measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.httpload import decode, run_many
from bench.platform_proc import ROOT, PlatformProcess, zip_handler
from bench.status_reads import batch_lookups, deploy_sleeper, finished_ids, learn_results, single_gets
from core.bundles import zip_folder


def emit(**kw: Any) -> None:
    """One JSON line."""
    print(json.dumps(kw), flush=True)


def pct(xs: list[float], q: float) -> float:
    """A percentile (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def epoch(iso: str) -> float:
    """ISO-8601 → Unix seconds."""
    return datetime.fromisoformat(iso).timestamp()


def persisted_executions(plat: PlatformProcess, function: str) -> int:
    """Execution rows of a function in PostgreSQL (what `every execution persisted` counts)."""
    import psycopg

    from core.db.engine import libpq_url

    with psycopg.connect(libpq_url((plat.home / "database.url").read_text().strip())) as conn:
        row = conn.execute("SELECT count(*) FROM execution_metrics WHERE function = %s", (function,)).fetchone()
    return int(row[0]) if row else 0


def burst_wait(plat: PlatformProcess, n: int, concurrency: int) -> dict[str, Any]:
    """N invocations of hello, each `POST ...?wait=60` (answered with its finished record), over
    `concurrency` keep-alive connections; then count the execution rows PostgreSQL gained."""
    before = persisted_executions(plat, "hello")
    reqs = [("POST", "/v1/functions/hello/invocations?wait=60", json.dumps({"name": f"n{i}"}).encode())
            for i in range(n)]
    cpu0 = time.process_time()
    out = uvloop.run(run_many(plat.url, plat.key, reqs, concurrency))
    client_cpu_ms = (time.process_time() - cpu0) * 1000
    wall = max(answered for _, answered, _, _ in out) - min(sent for sent, _, _, _ in out)
    ok = sum(1 for _, _, status, body in out if status == 200 and decode(body)["status"] == "succeeded")
    lat = [(answered - sent) * 1000 for sent, answered, _, _ in out]
    return {"mode": "wait", "n": n, "concurrency": concurrency, "wall_s": wall, "per_s": n / wall,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "succeeded": ok,
            "persisted": persisted_executions(plat, "hello") - before, "client_cpu_ms_per_req": client_cpu_ms / n}


def burst_async(plat: PlatformProcess, n: int, concurrency: int, function: str = "hello") -> dict[str, Any]:
    """N asynchronous invocations of `function` (202 + task id), then `GET /v1/tasks/{id}` until each has ended;
    submit-to-finish latency from the records' finished_at."""
    before = persisted_executions(plat, function)
    reqs = [("POST", f"/v1/functions/{function}/invocations", json.dumps({"name": f"n{i}"}).encode())
            for i in range(n)]
    out = uvloop.run(run_many(plat.url, plat.key, reqs, concurrency))
    t0 = min(sent for sent, _, _, _ in out)
    t_submitted = max(answered for _, answered, _, _ in out)
    submitted = {decode(body)["task_id"]: sent for sent, _, status, body in out if status == 202}
    finished: dict[str, float] = {}
    statuses: dict[str, str] = {}
    pending = list(submitted)
    while pending:
        got = uvloop.run(run_many(plat.url, plat.key, [("GET", f"/v1/tasks/{t}", b"") for t in pending],
                                  concurrency))
        for tid, (_, _, _, body) in zip(pending, got, strict=True):
            rec = decode(body)
            if rec["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
                finished[tid] = epoch(rec["finished_at"])
                statuses[tid] = rec["status"]
        pending = [t for t in pending if t not in finished]
        if pending:
            time.sleep(0.2)
    last = max(finished.values())
    lat = [(finished[t] - submitted[t]) * 1000 for t in submitted]
    return {"mode": "async", "n": n, "concurrency": concurrency, "accepted": len(submitted),
            "accept_per_s": n / (t_submitted - t0), "wall_s": last - t0, "per_s": n / (last - t0),
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "succeeded": sum(1 for t in submitted if statuses[t] == "succeeded"),
            "persisted": persisted_executions(plat, function) - before}


def sequential(plat: PlatformProcess, n: int) -> dict[str, Any]:
    """N invocations one after another with ?wait= on one keep-alive connection, client-measured round trip."""
    reqs = [("POST", "/v1/functions/hello/invocations?wait=10", json.dumps({"name": str(i)}).encode())
            for i in range(n)]
    out = uvloop.run(run_many(plat.url, plat.key, reqs, 1))
    lat = [(answered - sent) * 1000 for sent, answered, _, _ in out]
    for _, _, status, body in out:
        assert status == 200 and decode(body)["status"] == "succeeded", body
    return {"n": n, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "mean_ms": statistics.fmean(lat)}


def deploy_to_first_result(c: httpx.Client) -> dict[str, Any]:
    """A fresh function (new content, new runtime_env): deploy, then the first ?wait= result."""
    src = f"def handler(event, context):\n    return {{'fresh': {time.time_ns()}}}\n"
    t = time.perf_counter()
    archive = ("f.zip", zip_handler(src), "application/zip")
    r = c.post("/v1/functions", data={"name": "fresh"}, files={"archive": archive})
    assert r.status_code == 201, r.text
    t_deployed = time.perf_counter()
    rec = c.post("/v1/functions/fresh/invocations", params={"wait": 30}, json={}).json()
    t_done = time.perf_counter()
    assert rec["status"] == "succeeded", rec
    return {"deploy_ms": (t_deployed - t) * 1000, "first_result_ms": (t_done - t_deployed) * 1000,
            "total_ms": (t_done - t) * 1000, "cold_start": rec["metrics"]["cold_start"]}


def raw_ray(n: int, address: str | None = None) -> dict[str, Any]:
    """The floor: N Ray tasks calling the same handler directly, from the same ZIP as a gcs:// runtime_env (on a
    local 2-CPU Ray, or on the cluster at `address`)."""
    import ray
    from ray._private.runtime_env.packaging import upload_package_to_gcs

    if address:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        ray.init(num_cpus=2, logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    data = zip_folder(ROOT / "examples" / "hello")
    uri = f"gcs://_ray_pkg_bench_{abs(hash(data))}.zip"
    upload_package_to_gcs(uri, data)

    @ray.remote(max_retries=0)
    def call(i: int) -> tuple[Any, float]:
        import importlib

        class Ctx:
            aws_request_id = str(i)

        handler = importlib.import_module("main").handler
        return handler({"name": f"n{i}"}, Ctx()), time.time()

    fn = call.options(runtime_env={"working_dir": uri})
    ray.get([fn.remote(i) for i in range(20)])  # warm the workers
    t0 = time.time()
    submit = []
    refs = []
    for i in range(n):
        submit.append(time.time())
        refs.append(fn.remote(i))
    out = ray.get(refs)
    last = max(t for _, t in out)
    lat = [(t - s) * 1000 for (_, t), s in zip(out, submit, strict=True)]
    seq = []
    for i in range(200):
        t = time.perf_counter()
        ray.get(fn.remote(i))
        seq.append((time.perf_counter() - t) * 1000)
    ray.shutdown()
    return {"n": n, "per_s": n / (last - t0), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "sequential_p50_ms": pct(seq, 50), "sequential_p99_ms": pct(seq, 99)}


def status_round(plat: PlatformProcess, base: PlatformProcess | None, n: int, concurrency: int) -> dict[str, Any]:
    """One round of every status-read figure; with a baseline platform, its single GETs interleaved with ours
    (both platforms up at once, one measured at a time: the shared machine's load falls on both alike)."""
    ids = finished_ids(plat, n, concurrency)
    out = {"fast": single_gets(plat, ids, concurrency, route="fast")}
    if base is not None:
        out["baseline_tree"] = single_gets(base, finished_ids(base, n, concurrency), concurrency, route="fast")
    out.update(fastapi=single_gets(plat, ids, concurrency, route="fastapi"),
               lookup_1000=batch_lookups(plat, ids, size=1000, repeats=20),
               query_100=batch_lookups(plat, ids, size=100, repeats=20),
               longpoll=learn_results(plat, 128, 0.2, mode="longpoll"),
               poll=learn_results(plat, 128, 0.2, mode="poll"))
    for arm, figures in out.items():
        emit(bench="status_reads", arm=arm, **figures)
    return out


def baseline_platform(tree: str | None) -> PlatformProcess | contextlib.nullcontext[None]:
    """Today's platform, started from another source tree (e.g. /work/main), or nothing."""
    if tree is None:
        return contextlib.nullcontext()
    return PlatformProcess(extra_env={"PYTHONPATH": tree}, root=Path(tree))


def main() -> None:
    """Run everything and print JSON lines."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64, help="connections submitting asynchronously")
    ap.add_argument("--wait-concurrency", type=int, default=128, help="connections each waiting for its result")
    ap.add_argument("--sequential", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="each measurement this often; medians reported")
    ap.add_argument("--reads-concurrency", type=int, default=64, help="connections reading task records")
    ap.add_argument("--baseline-tree", help="also measure single GETs of a platform from this source tree")
    ap.add_argument("--only-reads", action="store_true", help="skip the invocation figures and raw Ray")
    ap.add_argument("--baseline-invocations", action="store_true",
                    help="with --baseline-tree: also measure the baseline's invocation bursts, in turn with ours")
    a = ap.parse_args()
    emit(bench="machine", cores=2, note="shared 2-core machine: figures are noisy; compare medians and ratios")
    waits, asyncs, seqs, deploys = [], [], [], []
    base_waits: list[dict[str, Any]] = []
    base_asyncs: list[dict[str, Any]] = []
    with baseline_platform(a.baseline_tree) as base, PlatformProcess() as plat, plat.client(timeout=60) as c:
        warm = [("POST", "/v1/functions/hello/invocations?wait=60", b"{}")] * 1000
        # steady state: as many workers and warm sandboxes as the bursts use, caches filled
        for p in (plat, base) if base is not None else (plat,):
            uvloop.run(run_many(p.url, p.key, warm, max(a.concurrency, a.wait_concurrency)))
        deploy_sleeper(plat)
        if a.baseline_tree:
            commit = subprocess.run(["git", "-C", a.baseline_tree, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()
            emit(bench="baseline_tree", tree=a.baseline_tree, commit=commit)
        reads = [status_round(plat, base, a.n, a.reads_concurrency) for _ in range(a.rounds)]
        ab = base is not None and a.baseline_invocations
        if base is not None and not ab:
            base.stop()  # the invocation figures below run on this platform alone
        for i in range(0 if a.only_reads else a.rounds):
            if ab:  # both platforms up; measured one at a time, which goes first alternating by round
                assert base is not None
                for arm in (("baseline", "this") if i % 2 else ("this", "baseline")):
                    if arm == "baseline":
                        base_waits.append(burst_wait(base, a.n, a.wait_concurrency))
                        base_asyncs.append(burst_async(base, a.n, a.concurrency))
                        emit(bench="platform_burst", arm=arm, **base_waits[-1])
                        emit(bench="platform_burst", arm=arm, **base_asyncs[-1])
                        continue
                    waits.append(burst_wait(plat, a.n, a.wait_concurrency))
                    asyncs.append(burst_async(plat, a.n, a.concurrency))
                    emit(bench="platform_burst", arm=arm, **waits[-1])
                    emit(bench="platform_burst", arm=arm, **asyncs[-1])
                time.sleep(5)
                continue
            waits.append(burst_wait(plat, a.n, a.wait_concurrency))
            emit(bench="platform_burst", **waits[-1])
            asyncs.append(burst_async(plat, a.n, a.concurrency))
            emit(bench="platform_burst", **asyncs[-1])
            time.sleep(5)  # one at a time on a settled platform: the bursts' lake flushes and detector batches done
            seqs.append(sequential(plat, a.sequential))
            emit(bench="platform_sequential_wait", **seqs[-1])
            deploys.append(deploy_to_first_result(c))
            emit(bench="deploy_to_first_result", **deploys[-1])
    med = statistics.median
    base_per_s = med(x["baseline_tree"]["per_s"] for x in reads) if a.baseline_tree else None
    fast_per_s = med(x["fast"]["per_s"] for x in reads)
    emit(bench="median_status_reads", rounds=a.rounds, concurrency=a.reads_concurrency,
         fast_get_per_s=fast_per_s, fastapi_get_per_s=med(x["fastapi"]["per_s"] for x in reads),
         baseline_tree=a.baseline_tree, baseline_tree_get_per_s=base_per_s,
         fast_over_baseline=fast_per_s / base_per_s if base_per_s else None,
         fast_get_p50_ms=med(x["fast"]["p50_ms"] for x in reads),
         lookup_1000_p50_ms=med(x["lookup_1000"]["p50_ms"] for x in reads),
         lookup_1000_p99_ms=med(x["lookup_1000"]["p99_ms"] for x in reads),
         query_100_p50_ms=med(x["query_100"]["p50_ms"] for x in reads),
         longpoll_wall_s=med(x["longpoll"]["wall_s"] for x in reads),
         longpoll_requests=med(x["longpoll"]["read_requests"] for x in reads),
         longpoll_known_after_end_p50_ms=med(x["longpoll"]["known_after_end_p50_ms"] for x in reads),
         poll_wall_s=med(x["poll"]["wall_s"] for x in reads),
         poll_requests=med(x["poll"]["read_requests"] for x in reads),
         poll_known_after_end_p50_ms=med(x["poll"]["known_after_end_p50_ms"] for x in reads))
    if a.only_reads:
        return
    if base_asyncs:
        this_w, this_a = med(x["per_s"] for x in waits), med(x["per_s"] for x in asyncs)
        base_w, base_a = med(x["per_s"] for x in base_waits), med(x["per_s"] for x in base_asyncs)
        emit(bench="median_invocations_vs_baseline", rounds=a.rounds, baseline_tree=a.baseline_tree,
             wait_per_s=this_w, baseline_wait_per_s=base_w, wait_over_baseline=this_w / base_w,
             async_per_s=this_a, baseline_async_per_s=base_a, async_over_baseline=this_a / base_a,
             async_accept_per_s=med(x["accept_per_s"] for x in asyncs),
             baseline_async_accept_per_s=med(x["accept_per_s"] for x in base_asyncs))
        return
    r = raw_ray(a.n)
    emit(bench="raw_ray", **r)
    wait_per_s, async_per_s = med(x["per_s"] for x in waits), med(x["per_s"] for x in asyncs)
    emit(bench="median", rounds=a.rounds, wait_per_s=wait_per_s, async_per_s=async_per_s,
         raw_ray_per_s=r["per_s"], wait_over_raw_ray=wait_per_s / r["per_s"],
         async_over_raw_ray=async_per_s / r["per_s"], sequential_p50_ms=med(x["p50_ms"] for x in seqs),
         sequential_p99_ms=med(x["p99_ms"] for x in seqs),
         deploy_to_first_result_ms=med(x["total_ms"] for x in deploys))


if __name__ == "__main__":
    main()
