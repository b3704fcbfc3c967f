"""Status reads for bench/throughput.py: single GETs (fast path and FastAPI route), batch lookups and long-polls.

Every function takes a running platform (bench.platform_proc) and the ids of tasks that have ended, and returns
one JSON-able dict. The FastAPI route is reached by the same request with one extra query parameter (which the
fast path leaves to the route, which ignores it).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import uvloop

from bench.httpload import decode, run_many
from bench.platform_proc import PlatformProcess

TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")


def pct(xs: list[float], q: float) -> float:
    """A percentile (nearest rank)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def finished_ids(plat: PlatformProcess, n: int, concurrency: int) -> list[str]:
    """N asynchronous invocations of hello, then plain GETs until each has ended (works on any version of the
    platform, also one without long-poll); their ids."""
    reqs = [("POST", "/v1/functions/hello/invocations", json.dumps({"name": f"r{i}"}).encode()) for i in range(n)]
    out = uvloop.run(run_many(plat.url, plat.key, reqs, concurrency))
    ids = [decode(body)["task_id"] for _, _, status, body in out if status == 202]
    if len(ids) < n:  # say why instead of measuring nothing
        refused = [(status, body[:200]) for _, _, status, body in out if status != 202]
        raise SystemExit(f"{plat.url}: {len(refused)} of {n} invocations not accepted, e.g. {refused[:3]}")
    pending = list(ids)
    while pending:
        time.sleep(0.5)
        got = uvloop.run(run_many(plat.url, plat.key, [("GET", f"/v1/tasks/{t}", b"") for t in pending],
                                  concurrency))
        pending = [t for t, (_, _, _, body) in zip(pending, got, strict=True)
                   if decode(body)["status"] not in TERMINAL]
    return ids


def single_gets(plat: PlatformProcess, ids: list[str], concurrency: int, *, route: str) -> dict[str, Any]:
    """One `GET /v1/tasks/{id}` per id over `concurrency` keep-alive connections; reads/s and latency.
    route "fast": the ASGI fast path; "fastapi": the FastAPI route (one extra query parameter)."""
    suffix = "" if route == "fast" else "?via=fastapi"
    reqs = [("GET", f"/v1/tasks/{t}{suffix}", b"") for t in ids]
    out = uvloop.run(run_many(plat.url, plat.key, reqs, concurrency))
    wall = max(a for _, a, _, _ in out) - min(s for s, _, _, _ in out)
    lat = [(a - s) * 1000 for s, a, _, _ in out]
    ok = sum(1 for _, _, status, body in out if status == 200 and decode(body)["status"] in TERMINAL)
    return {"route": route, "n": len(ids), "concurrency": concurrency, "ok": ok, "per_s": len(ids) / wall,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


def batch_lookups(plat: PlatformProcess, ids: list[str], *, size: int, repeats: int) -> dict[str, Any]:
    """`POST /v1/tasks/lookup` of `size` ids (or `GET /v1/tasks?ids=` when size ≤ 100), `repeats` times one
    after another on one connection; latency per batch."""
    chunk = ids[:size]
    if size > 100:
        reqs = [("POST", "/v1/tasks/lookup", json.dumps({"ids": chunk}).encode())] * repeats
    else:
        reqs = [("GET", "/v1/tasks?ids=" + ",".join(chunk), b"")] * repeats
    out = uvloop.run(run_many(plat.url, plat.key, reqs, 1))
    lat = [(a - s) * 1000 for s, a, _, _ in out]
    counts = {len(decode(body)["tasks"]) for _, _, status, body in out if status == 200}
    return {"method": reqs[0][0], "ids": size, "repeats": repeats, "records_per_answer": sorted(counts),
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "records_per_s": size * repeats / sum(lat) * 1000}


SLEEPER = "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n    return event\n"


def deploy_sleeper(plat: PlatformProcess) -> str:
    """A function that sleeps as long as its event says (results that are not ready at once)."""
    from bench.platform_proc import zip_handler

    with plat.client(timeout=120) as c:
        r = c.post("/v1/functions", data={"name": "sleeper"},
                   files={"archive": ("f.zip", zip_handler(SLEEPER), "application/zip")})
        assert r.status_code == 201, r.text
    # its runtime_env workers and warm sandboxes started, as many as a burst of 128 uses
    warm = [("POST", "/v1/functions/sleeper/invocations?wait=60", json.dumps({"s": 0.2}).encode())] * 256
    out = uvloop.run(run_many(plat.url, plat.key, warm, 128))
    assert all(status == 200 for _, _, status, _ in out)
    return "sleeper"


def learn_results(plat: PlatformProcess, n: int, sleep_s: float, *, mode: str) -> dict[str, Any]:
    """Submit N invocations of the sleeper, then learn every result over N connections (one per task):
    `longpoll` (`GET ?wait=60` until ended) or `poll` (a plain GET every 0.2 s until ended). Time from the first
    submit to the last result known, the read requests it took, and how long after its end each result was known
    (from the record's finished_at: same host, same clock)."""
    reqs = [("POST", "/v1/functions/sleeper/invocations", json.dumps({"s": sleep_s, "i": i}).encode())
            for i in range(n)]
    out = uvloop.run(run_many(plat.url, plat.key, reqs, n))
    t0 = min(s for s, _, _, _ in out)
    pending = [decode(body)["task_id"] for _, _, status, body in out if status == 202]
    known: dict[str, float] = {}
    ended: dict[str, float] = {}
    requests = 0
    suffix = "?wait=60" if mode == "longpoll" else ""
    while pending:
        got = uvloop.run(run_many(plat.url, plat.key, [("GET", f"/v1/tasks/{t}{suffix}", b"") for t in pending],
                                  len(pending)))
        requests += len(pending)
        for tid, (_, answered, _, body) in zip(pending, got, strict=True):
            rec = decode(body)
            if rec["status"] in TERMINAL:
                known[tid] = answered
                ended[tid] = datetime.fromisoformat(rec["finished_at"]).timestamp()
        pending = [t for t in pending if t not in known]
        if pending and mode == "poll":
            time.sleep(0.2)
    lag = [(known[t] - ended[t]) * 1000 for t in known]
    return {"mode": mode, "n": n, "sleep_s": sleep_s, "wall_s": max(known.values()) - t0, "read_requests": requests,
            "known_after_end_p50_ms": pct(lag, 50), "known_after_end_p99_ms": pct(lag, 99)}
