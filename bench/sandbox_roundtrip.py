"""Per-invocation cost of the warm sandbox alone: wall time and CPU (supervisor and child) of a trivial handler.

    .venv/bin/python -m bench.sandbox_roundtrip [--n 5000] [--batch 16]

Prints one JSON line per mode: one invocation per request, and `--batch` invocations per request (as the
dispatcher sends a short function's queued invocations). The baseline in the same run is a plain
in-process call of the same handler, so the figures are the sandbox's own overhead (pipe round trip,
measurement, limits, log capture) per invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import psutil

from cluster.sandbox import SandboxPool
from cluster.sandbox.context import InvocationContext
from core.models import FunctionConfig

SOURCE = "def handler(event, context):\n    return {'greeting': 'Hello, ' + event.get('name', 'world') + '!'}\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "code"
        code.mkdir()
        (code / "main.py").write_text(SOURCE)
        pool = SandboxPool(Path(f"/tmp/cloudfn-bench-sandbox-{os.getpid()}"))  # sandbox uids must reach it
        cfg = FunctionConfig()
        event = b'{"name": "bench"}'

        def ctx(i: int) -> InvocationContext:
            return InvocationContext(function_name="bench", function_version="1", aws_request_id=f"r{i}",
                                     memory_limit_in_mb=cfg.memory_mb, invoked_function_arn="arn:bench",
                                     log_group_name="/bench", log_stream_name=f"1/r{i}",
                                     deadline_epoch=time.time() + cfg.timeout_s)

        def call(i: int, batch: int) -> None:
            outs = pool.invoke_many(key="bench", code_dir=code, handler="main.handler", config=cfg,
                                    calls=[(event, ctx(i + k)) for k in range(batch)])
            assert all(o.status.value == "succeeded" for o in outs), [o.error for o in outs]

        call(0, 50)
        me = psutil.Process()
        kids = me.children(recursive=True)
        results = []
        for batch in (1, args.batch):
            k0 = sum(sum(k.cpu_times()[:2]) for k in kids)
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(0, args.n, batch):
                call(i, batch)
            wall = time.perf_counter() - t0
            sup = time.process_time() - c0
            child = sum(sum(k.cpu_times()[:2]) for k in kids) - k0
            results.append({"batch": batch, "us_per_invocation": wall / args.n * 1e6,
                            "supervisor_cpu_us": sup / args.n * 1e6, "child_cpu_us": child / args.n * 1e6})
        pool.close()
        ns = {"SOURCE": SOURCE}
        exec(compile(SOURCE, "main.py", "exec"), ns)  # noqa: S102 - the baseline: the same handler in-process
        h = ns["handler"]
        t1 = time.perf_counter()
        for _ in range(args.n):
            json.dumps(h(json.loads(event), None))
        direct = time.perf_counter() - t1
        for r in results:
            print(json.dumps({"bench": "sandbox_roundtrip", "n": args.n, **r,
                              "in_process_us": direct / args.n * 1e6, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
