"""Throughput per API replica count, and the spec's 10,000 executions as one burst.

    .venv/bin/python -m bench.replicas [--replicas 1,2] [--n 2000] [--rounds 3] [--burst 10000]

For each replica count, starts the platform as `cloudfn up` does with CLOUDFN_API_REPLICAS set (one platform at a
time: this is a 2-core machine), warms it, then measures `--rounds` rounds of bench.throughput's bursts (`?wait=`
and asynchronous, every execution persisted and counted in PostgreSQL), one asynchronous burst of `--burst`
invocations (all terminal, time from the first request to the last finished_at), and the first burst of a
function deployed just before against its next one (`first_over_steady`), for a new function and for the next
version of one that has had traffic (`--first-rounds` of each; the median line has their medians). Then raw
Ray in the same run as the floor. Prints JSON lines, and a `median` line per replica count with its ratio to
one replica and to raw Ray.

With `--two-raylets`, all of it runs on a Ray cluster of two nodes on this host (`ray start`, `--cpus-per-node`
CPUs each; bench.ray_nodes), `cloudfn up` joined to it with one Serve proxy (on the head) and at most one API
replica per node, and raw Ray on the same cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from typing import Any

import uvloop
import yaml

from bench.httpload import run_many
from bench.platform_proc import ROOT, PlatformProcess, zip_handler
from bench.ray_nodes import ray_env, ray_query, two_nodes
from bench.throughput import burst_async, burst_wait, raw_ray


def emit(**kw: Any) -> None:
    """One JSON line."""
    print(json.dumps(kw), flush=True)


def measure(replicas: int, n: int, rounds: int, burst: int, concurrency: int, wait_concurrency: int,
            env: dict[str, str], cluster: dict[str, Any] | None = None, first_rounds: int = 3) -> dict[str, Any]:
    """The medians of one replica count's rounds and first bursts (`first_rounds` new functions, each then
    redeployed), and its big burst."""
    waits, asyncs = [], []
    with PlatformProcess(extra_env={**env, "CLOUDFN_API_REPLICAS": str(replicas)}) as plat:
        if cluster is not None:
            emit(bench="placement", replicas=replicas, api_replicas_on=replica_nodes(cluster))
        # every replica live long enough to be a home first: the warm-up then runs where the rounds will (a
        # function whose home moves starts over on the new home: its speed unknown, its children cold)
        time.sleep(8)
        warm = [("POST", "/v1/functions/hello/invocations?wait=60", b"{}")] * 1000
        uvloop.run(run_many(plat.url, plat.key, warm, max(concurrency, wait_concurrency)))
        time.sleep(2)
        for _ in range(rounds):
            waits.append(burst_wait(plat, n, wait_concurrency))
            emit(bench="replicas_burst", replicas=replicas, **waits[-1])
            asyncs.append(burst_async(plat, n, concurrency))
            emit(bench="replicas_burst", replicas=replicas, **asyncs[-1])
            time.sleep(5)
        big = burst_async(plat, burst, concurrency) if burst else None
        if big is not None:
            emit(bench="replicas_big_burst", replicas=replicas, **big)
        news, redeploys = [], []
        for _ in range(first_rounds):
            name = f"fresh{time.time_ns() % 10**9}"
            first, steady = first_burst(plat, n, concurrency, name)  # a new function
            news.append(first["per_s"] / steady["per_s"])
            emit(bench="first_burst_after_deploy", replicas=replicas, function="new", first=first,
                 steady=steady, first_over_steady=news[-1])
            time.sleep(5)
            first, steady = first_burst(plat, n, concurrency, name)  # its next version, after its traffic
            redeploys.append(first["per_s"] / steady["per_s"])
            emit(bench="first_burst_after_deploy", replicas=replicas, function="redeployed", first=first,
                 steady=steady, first_over_steady=redeploys[-1])
            time.sleep(5)
    med = statistics.median
    return {"replicas": replicas, "first_burst_over_steady": med(redeploys),
            "new_function_first_burst_over_steady": med(news),
            "wait_per_s": med(x["per_s"] for x in waits),
            "async_per_s": med(x["per_s"] for x in asyncs),
            "async_accept_per_s": med(x["accept_per_s"] for x in asyncs),
            "async_p50_ms": med(x["p50_ms"] for x in asyncs),
            "lost": sum(x["n"] - x["persisted"] for x in waits + asyncs),
            "big_burst": None if big is None else {"n": big["n"], "all_terminal_s": big["wall_s"],
                                                   "succeeded": big["succeeded"], "persisted": big["persisted"]}}


def first_burst(plat: PlatformProcess, n: int, concurrency: int, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Deploy a version of `name` (new code) and burst it at once (its first burst), then again (steady)."""
    src = f"def handler(event, context):\n    return {{'hello': event.get('name'), 'v': {time.time_ns()}}}\n"
    with plat.client(timeout=120) as c:
        r = c.post("/v1/functions", data={"name": name},
                   files={"archive": ("f.zip", zip_handler(src), "application/zip")})
        r.raise_for_status()
    first = burst_async(plat, n, concurrency, name)
    time.sleep(5)
    return first, burst_async(plat, n, concurrency, name)


def replica_nodes(cluster: dict[str, Any]) -> list[str]:
    """Which node ("head" or "second") each live API replica runs on (GCS's actor table)."""
    placed = ray_query(cluster, (
        "from ray._private.state import actors\n"
        "print(json.dumps([a['Address']['NodeID'] for a in actors().values() "
        "if a['State'] == 'ALIVE' and 'CloudFnApi' in (a.get('Name') or '')]))"))
    return sorted("head" if node == cluster["head_id"] else "second" for node in placed)


def joined_env(cluster: dict[str, Any]) -> dict[str, str]:
    """`cloudfn up`'s environment to join the two-node cluster: one Serve proxy, on the head (two on one host would
    share a port), and at most one API replica per node."""
    serve = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    serve["proxy_location"] = "HeadOnly"
    serve["applications"][0]["deployments"][0]["max_replicas_per_node"] = 1
    cfg = cluster["tmp"] / "serve.yaml"
    cfg.write_text(yaml.safe_dump(serve))
    return {"CLOUDFN_RAY_ADDRESS": cluster["address"], "CLOUDFN_SERVE_CONFIG": str(cfg), **ray_env(cluster["tmp"])}


def main() -> None:
    """Run every replica count, then raw Ray; print JSON lines."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", default="1,2", help="comma-separated replica counts")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--burst", type=int, default=10000, help="one asynchronous burst this big per count (0: none)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--wait-concurrency", type=int, default=128)
    ap.add_argument("--first-rounds", type=int, default=3, help="new functions (each then redeployed) per count")
    ap.add_argument("--two-raylets", action="store_true", help="on a two-node Ray cluster started on this host")
    ap.add_argument("--cpus-per-node", type=int, default=1, help="with --two-raylets")
    a = ap.parse_args()
    emit(bench="machine", cores=os.cpu_count(), two_raylets=a.two_raylets,
         note="shared machine: compare medians and ratios from the same run")
    counts = [int(k) for k in a.replicas.split(",")]
    rows = []
    for i, count in enumerate(counts):
        # a fresh cluster per replica count: Serve's HTTP port is fixed once per cluster
        with contextlib.ExitStack() as stack:
            env: dict[str, str] = {}
            address = None
            if a.two_raylets:
                cluster = stack.enter_context(two_nodes(cpus=a.cpus_per_node))
                env, address = joined_env(cluster), cluster["address"]
                os.environ.update(ray_env(cluster["tmp"]))  # for raw Ray, a driver of the same cluster
                emit(bench="cluster", nodes=2, cpus_per_node=a.cpus_per_node, address=address)
            rows.append(measure(count, a.n, a.rounds, a.burst, a.concurrency, a.wait_concurrency, env,
                                cluster if a.two_raylets else None, a.first_rounds))
            if i == len(counts) - 1:
                floor = raw_ray(a.n, address)
    emit(bench="raw_ray", **floor)
    one = rows[0]
    for row in rows:
        emit(bench="median", **row, raw_ray_per_s=floor["per_s"],
             async_over_one_replica=row["async_per_s"] / one["async_per_s"],
             wait_over_one_replica=row["wait_per_s"] / one["wait_per_s"],
             async_over_raw_ray=row["async_per_s"] / floor["per_s"])


if __name__ == "__main__":
    main()
