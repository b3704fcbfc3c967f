"""Overhead of running a trivial handler: in-process, in a warm sandbox child, and in a cold one; the same
for a Node.js handler (`runtime: nodejs20`, when `node` is installed), against the Python figures of the
same run.

Prints one JSON line per case with the median and p99 of the per-call overhead (wall time of the call
minus the handler's own measured duration) in milliseconds. Run: `.venv/bin/python bench/sandbox_overhead.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from cluster.sandbox import InvocationContext, SandboxPool
from core.models import FunctionConfig

SOURCE = "def handler(event, context):\n    return {'ok': event['n']}\n"
SOURCE_JS = "exports.handler = async (event) => ({ ok: event.n });\n"
HANDLERS = {"python3.11": "main.handler", "nodejs20": "index.handler"}


def _stats(name: str, samples_ms: list[float], **extra: object) -> str:
    samples_ms.sort()
    p99 = samples_ms[min(len(samples_ms) - 1, int(len(samples_ms) * 0.99))]
    return json.dumps({"case": name, "n": len(samples_ms), "median_ms": round(statistics.median(samples_ms), 4),
                       "p99_ms": round(p99, 4), **extra})


def _context() -> InvocationContext:
    return InvocationContext("bench", "1", uuid.uuid4().hex, 128, "arn:bench", "/bench", "s", time.time() + 30)


def bench_direct(n: int) -> str:
    """(a) the handler called in this process, JSON in and out as the sandbox does."""
    ns: dict[str, Callable[..., object]] = {}
    exec(SOURCE, ns)  # noqa: S102 - the benchmark's own trivial handler
    handler, ctx, samples = ns["handler"], _context(), []
    for i in range(n):
        event = json.dumps({"n": i}).encode()
        t0 = time.perf_counter()
        json.dumps(handler(json.loads(event), ctx)).encode()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return _stats("direct_in_process", samples)


def bench_pool(pool: SandboxPool, code: Path, n: int, *, cold: bool, runtime: str = "python3.11") -> str:
    """(b)/(c) wall time of invoke() minus the handler's own duration."""
    cfg = FunctionConfig(timeout_s=30, memory_mb=128, runtime=runtime)  # type: ignore[arg-type]
    handler = HANDLERS[runtime]
    key = f"bench/warm/{uuid.uuid4().hex}"
    if not cold:
        pool.invoke(key=key, code_dir=code, handler=handler, config=cfg, event_json=b'{"n": 0}',
                    context=_context())
    overhead, totals = [], []
    for i in range(n):
        k = f"bench/cold/{uuid.uuid4().hex}" if cold else key
        t0 = time.perf_counter()
        out = pool.invoke(key=k, code_dir=code, handler=handler, config=cfg,
                          event_json=json.dumps({"n": i}).encode(), context=_context())
        total = (time.perf_counter() - t0) * 1000.0
        assert out.output == {"ok": i} and out.cold_start == cold, out
        totals.append(total)
        overhead.append(total - out.duration_ms)
        if cold:
            pool.kill(k)
    suffix = "" if runtime == "python3.11" else "_node"
    return _stats(("cold_sandbox" if cold else "warm_sandbox") + suffix, overhead,
                  total_median_ms=round(statistics.median(totals), 4),
                  isolation=out.extra.get("isolation", {}).get("mount_ns"))


def main() -> None:
    """Run the three cases."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--direct", type=int, default=2000)
    parser.add_argument("--warm", type=int, default=2000)
    parser.add_argument("--cold", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cloudfn-bench-"))
    (work / "code").mkdir()
    (work / "code" / "main.py").write_text(SOURCE)
    (work / "code" / "index.js").write_text(SOURCE_JS)
    pool = SandboxPool(Path(f"/tmp/cloudfn-bench-sandbox-{os.getpid()}"))  # sandbox uids must reach it
    try:
        print(bench_direct(args.direct), flush=True)
        print(bench_pool(pool, work / "code", args.warm, cold=False), flush=True)
        print(bench_pool(pool, work / "code", args.cold, cold=True), flush=True)
        if shutil.which("node"):
            print(bench_pool(pool, work / "code", args.warm, cold=False, runtime="nodejs20"), flush=True)
            print(bench_pool(pool, work / "code", args.cold, cold=True, runtime="nodejs20"), flush=True)
    finally:
        pool.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(pool.root, ignore_errors=True)


if __name__ == "__main__":
    main()
