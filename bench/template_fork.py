"""What a per-version template (a warm child forking its siblings, copy-on-write) would save against fresh
jailed children: proportional set size and start time, with real jailed children of one host pool.

    .venv/bin/python -m bench.template_fork [--k 8]

Fresh: K versions, each with its own warm child started as today (bwrap, `python -I -S -B bootstrap.py`, its
own uid, cgroup, namespaces), each having run the same small JSON handler. Template: one more version whose
warm child, inside its jail, forks K copies of itself (as a template per version would, after importing the
version's code); each copy runs the same handler work, collects garbage and waits. PSS from
`/proc/<pid>/smaps_rollup` of every process in the children's cgroups, read at one moment with everything
alive, so shared pages are split the same way for both. Needs root (the jail's uid switch and cgroups).
Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.density import pss_kib
from cluster.sandbox import SandboxPool
from cluster.sandbox.context import InvocationContext
from core.models import FunctionConfig

SOURCE = """
import gc, json, os, time
_forks = []  # (pid, release fd) of the copies this child forked

def work():
    for i in range(50):
        json.loads(json.dumps({"items": list(range(200)), "i": i}))

def fork_copies(n, freeze):
    if freeze:
        gc.freeze()
    started = []
    for _ in range(n):
        ready_r, ready_w = os.pipe()
        release_r, release_w = os.pipe()
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r); os.close(release_w)
            for _, fd in _forks:  # earlier copies' release pipes: theirs alone
                os.close(fd)
            os.write(ready_w, b"s")
            work(); gc.collect()
            os.write(ready_w, b"w")
            os.read(release_r, 1)
            os._exit(0)
        os.close(ready_w); os.close(release_r)
        os.read(ready_r, 1)
        started.append((time.perf_counter() - t) * 1000)
        os.read(ready_r, 1)
        os.close(ready_r)
        _forks.append((pid, release_w))
    return started

def handler(event, context):
    if event.get("release"):
        for pid, fd in _forks:
            os.close(fd)
            os.waitpid(pid, 0)
        _forks.clear()
        return {"released": True}
    if event.get("fork"):
        return {"started_ms": fork_copies(event["fork"], event.get("freeze", False))}
    work()
    return {"ok": True}
"""


def emit(**kw: Any) -> None:
    """One JSON line."""
    print(json.dumps(kw), flush=True)


def tree_pss_mib(pids: list[int]) -> float:
    """PSS of these processes together, in MiB."""
    return sum(pss_kib(p) for p in pids) / 1024


def python_pid(pids: list[int]) -> int:
    """The interpreter among a jail's processes (bwrap's own processes are the others)."""
    for p in pids:
        try:
            if b"bootstrap.py" in Path(f"/proc/{p}/cmdline").read_bytes() and \
                    not Path(f"/proc/{p}/exe").resolve().name.startswith("bwrap"):
                return p
        except OSError:
            continue
    return pids[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, default=8, help="fresh children, and copies forked from the template")
    args = ap.parse_args()
    cfg = FunctionConfig()
    root = Path(f"/tmp/cloudfn-bench-template-{os.getpid()}")  # sandbox uids must reach it
    pool = SandboxPool(root, idle_ttl_s=600.0, max_warm=args.k + 4)
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "code"
        code.mkdir()
        os.chmod(tmp, 0o755)
        (code / "main.py").write_text(SOURCE)

        def call(key: str, event: dict[str, Any]) -> tuple[dict[str, Any], bool, float]:
            ctx = InvocationContext(function_name=key, function_version="1", aws_request_id=f"r{time.time_ns()}",
                                    memory_limit_in_mb=cfg.memory_mb, invoked_function_arn="arn:bench",
                                    log_group_name="/bench", log_stream_name="1/r",
                                    deadline_epoch=time.time() + cfg.timeout_s)
            t = time.perf_counter()
            out = pool.invoke(key=key, code_dir=code, handler="main.handler", config=cfg,
                              event_json=json.dumps(event).encode(), context=ctx)
            ms = (time.perf_counter() - t) * 1000
            assert out.status.value == "succeeded", out.error
            return out.output, out.cold_start, ms

        try:
            fresh = [f"fresh/{i}" for i in range(args.k)]
            cold_ms = []
            for key in fresh:
                _, cold, ms = call(key, {"work": 1})
                assert cold
                cold_ms.append(ms)
                call(key, {"work": 1})
            results = {}
            for freeze in (False, True):
                key = f"template/{'freeze' if freeze else 'plain'}"
                call(key, {"work": 1})
                call(key, {"work": 1})
                before = pool.warm_pids(key)
                template_before = tree_pss_mib(before)
                template_python_before = pss_kib(python_pid(before)) / 1024
                started = call(key, {"fork": args.k, "freeze": freeze})[0]["started_ms"]
                after = pool.warm_pids(key)
                assert len(after) == len(before) + args.k, (before, after)
                fresh_trees = [pool.warm_pids(k) for k in fresh]  # measured now, with the copies alive
                fresh_tree = [tree_pss_mib(p) for p in fresh_trees]
                fresh_python = [pss_kib(python_pid(p)) / 1024 for p in fresh_trees]
                template_after = tree_pss_mib(after)
                copies = [p for p in after if p not in before]
                results[key] = {
                    "k": args.k, "gc_freeze": freeze,
                    "fresh_child_mib": round(statistics.median(fresh_tree), 2),
                    "fresh_child_python_mib": round(statistics.median(fresh_python), 2),
                    "fresh_child_jail_processes": len(fresh_trees[0]),
                    "template_alone_mib": round(template_before, 2),
                    "template_python_alone_mib": round(template_python_before, 2),
                    "forked_copy_marginal_mib": round((template_after - template_before) / args.k, 2),
                    "forked_copy_pss_median_mib": round(statistics.median(pss_kib(p) / 1024 for p in copies), 2),
                    "fresh_cold_start_ms_median": round(statistics.median(cold_ms), 1),
                    "fork_started_ms_median": round(statistics.median(started), 2)}
                emit(bench="template_fork", **results[key])
                call(key, {"release": True})
        finally:
            pool.close()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
