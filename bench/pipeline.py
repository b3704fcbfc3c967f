"""A 3-step pipeline against three separate client-driven invocations of the same functions.

    .venv/bin/python -m bench.pipeline [--n 200] [--concurrency 16]

Prints JSON lines: runs per second and p50/p99 latency of each way (2-core shared machine: noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httpx

from bench.platform_proc import PlatformProcess, zip_handler
from bench.throughput import pct

STEPS = {"add1": "def handler(e, c):\n    return {'x': e['x'] + 1}\n",
         "double": "def handler(e, c):\n    return {'x': e['x'] * 2}\n",
         "square": "def handler(e, c):\n    return {'x': e['x'] ** 2}\n"}


async def run(plat: PlatformProcess, n: int, concurrency: int, pipeline: bool) -> dict[str, Any]:
    """n runs of ((x+1)*2)^2, as one pipeline invocation or as three chained client calls."""
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []
    async with httpx.AsyncClient(base_url=plat.url, headers={"Authorization": f"Bearer {plat.key}"},
                                 timeout=120) as ac:
        async def one(i: int) -> None:
            async with sem:
                t = time.perf_counter()
                if pipeline:
                    r = await ac.post("/v1/pipelines/p3/invocations", params={"wait": 60}, json={"x": i})
                    out = r.json()["output"]
                else:
                    out = {"x": i}
                    for fn in STEPS:
                        r = await ac.post(f"/v1/functions/{fn}/invocations", params={"wait": 60}, json=out)
                        out = r.json()["output"]
                assert out == {"x": ((i + 1) * 2) ** 2}, out
                lat.append((time.perf_counter() - t) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
    return {"n": n, "per_s": n / wall, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


def main() -> None:
    """Deploy, warm, measure both ways."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    a = ap.parse_args()
    with PlatformProcess() as plat, plat.client(timeout=60) as c:
        for name, src in STEPS.items():
            assert c.post("/v1/functions", data={"name": name},
                          files={"archive": ("f.zip", zip_handler(src), "application/zip")}).status_code == 201
        assert c.post("/v1/pipelines", json={"name": "p3", "steps": list(STEPS)}).status_code == 201
        asyncio.run(run(plat, 20, 4, True))
        asyncio.run(run(plat, 20, 4, False))
        p = asyncio.run(run(plat, a.n, a.concurrency, True))
        print(json.dumps({"bench": "pipeline_3_steps", **p}), flush=True)
        s = asyncio.run(run(plat, a.n, a.concurrency, False))
        print(json.dumps({"bench": "three_separate_invocations", **s}), flush=True)
        print(json.dumps({"bench": "ratio", "pipeline_over_separate": p["per_s"] / s["per_s"]}))


if __name__ == "__main__":
    main()
