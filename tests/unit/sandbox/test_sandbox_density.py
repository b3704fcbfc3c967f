"""Warm density: the host's memory budget evicts the least recently used warm children (real jailed children,
PSS read from /proc), an evicted function still answers (cold), and a warm child of one function holds
nothing of another's (descriptors, environment, working directory, code) in a pool hosting both."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.sandbox import SandboxPool
from cluster.sandbox.warm import WarmLedger, host_metrics
from core.models import FunctionConfig, TaskStatus

from .conftest import invoke, needs_root, sandbox_root, write_code

IDENTITY = """
import os
MARK = {mark!r}
SECRET = os.environ.get("SECRET")
def handler(event, context):
    return {{"mark": MARK, "secret_at_import": SECRET, "secret": os.environ.get("SECRET"), "cwd": os.getcwd(),
             "env": sorted(os.environ), "pid_token": os.urandom(4).hex()}}
"""


@pytest.fixture()
def budget_pool() -> Iterator[SandboxPool]:
    """A pool with a memory budget (far above anything until a test lowers it), in its own root/ledger."""
    root = sandbox_root()
    p = SandboxPool(root, idle_ttl_s=600.0, max_warm=16, budget_mb=1 << 20)
    yield p
    p.close()
    shutil.rmtree(root, ignore_errors=True)


def identity_code(base: Path, mark: str) -> Path:
    """A handler that reports its own code's mark, its environment and working directory."""
    return write_code(base / mark, IDENTITY.format(mark=mark))


@needs_root
def test_budget_keeps_most_recently_used_and_evicts_the_rest(budget_pool: SandboxPool, tmp_path: Path) -> None:
    keys = [f"t/lru/{i}/{uuid.uuid4().hex[:8]}" for i in range(4)]
    codes = {k: identity_code(tmp_path, f"fn{i}") for i, k in enumerate(keys)}
    for k in keys:
        assert invoke(budget_pool, codes[k], {}, key=k).status == TaskStatus.SUCCEEDED
    again = invoke(budget_pool, codes[keys[0]], {}, key=keys[0])  # keys[0] is now the most recently used
    assert again.status == TaskStatus.SUCCEEDED and not again.cold_start
    assert budget_pool.enforce_budget(now=True) == 0  # far under the budget: nothing goes
    state = budget_pool.ledger.read()
    assert state.functions == 4 and len(state.children) == 4
    assert all(c.pss_kib > 0 for c in state.children) and state.hosts_kib() > 0
    by_key = {c.key: c.pss_kib for c in state.children}
    # room for this worker and the two most recently used children (keys[0], keys[3]), not for a third
    room = state.hosts_kib() + by_key[keys[0]] + by_key[keys[3]] + min(by_key[keys[1]], by_key[keys[2]]) // 2
    budget_pool.budget_mb = room / 1024
    assert budget_pool.enforce_budget(now=True) == 2
    assert [budget_pool.warm_count(k) for k in keys] == [1, 0, 0, 1]
    after = budget_pool.ledger.read()
    assert after.evictions == 2 and after.functions == 2 and {c.key for c in after.children} == {keys[0], keys[3]}
    metrics = host_metrics(64, budget_pool.root).decode()
    assert "cloudfn_warm_functions 2" in metrics and "cloudfn_warm_evictions_total 2" in metrics


@needs_root
def test_evicted_function_answers_cold_and_correctly(budget_pool: SandboxPool, tmp_path: Path) -> None:
    a, b = f"t/evict/a/{uuid.uuid4().hex[:8]}", f"t/evict/b/{uuid.uuid4().hex[:8]}"
    code_a, code_b = identity_code(tmp_path, "fnA"), identity_code(tmp_path, "fnB")
    first = invoke(budget_pool, code_a, {}, key=a)
    assert invoke(budget_pool, code_b, {}, key=b).status == TaskStatus.SUCCEEDED
    budget_pool.budget_mb = 1 / 1024  # 1 KiB: only the most recently used child may stay
    assert budget_pool.enforce_budget(now=True) == 1
    assert budget_pool.warm_count(a) == 0 and budget_pool.warm_count(b) == 1
    back = invoke(budget_pool, code_a, {}, key=a)
    assert back.status == TaskStatus.SUCCEEDED and back.cold_start
    assert back.output["mark"] == "fnA" and back.output["pid_token"] != first.output["pid_token"]
    assert budget_pool.enforce_budget(now=True) == 1  # now b is the least recently used
    assert budget_pool.warm_count(a) == 1 and budget_pool.warm_count(b) == 0


def fd_targets(pid: int) -> set[str]:
    """What each open descriptor of a process points at (paths, pipe:[inode], socket:[inode], ...)."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


def pipe_ids(pool: SandboxPool, key: str) -> set[str]:
    """The supervisor's pipe ends of a key's warm children, as /proc shows them (pipe:[inode])."""
    with pool._lock:  # noqa: SLF001 - the test looks at the supervisor's own descriptors of B's child
        children = [c for c in pool._idle if c.key == key]  # noqa: SLF001
    ids = set()
    for c in children:
        for stream in (c.proc.stdin, c.proc.stdout, c.proc.stderr):
            if stream is not None:
                ids.add(os.readlink(f"/proc/self/fd/{stream.fileno()}"))
    return ids


@needs_root
def test_warm_child_of_a_holds_nothing_of_b(budget_pool: SandboxPool, tmp_path: Path) -> None:
    a, b = f"t/iso/a/{uuid.uuid4().hex[:8]}", f"t/iso/b/{uuid.uuid4().hex[:8]}"
    code_a, code_b = identity_code(tmp_path, "fnA"), identity_code(tmp_path, "fnB")
    cfg_b = FunctionConfig(timeout_s=10, memory_mb=128, env={"SECRET": "b-only-" + uuid.uuid4().hex})
    out_b = invoke(budget_pool, code_b, {}, key=b, config=cfg_b)
    assert out_b.output["mark"] == "fnB" and out_b.output["secret"] == cfg_b.env["SECRET"]
    out_a = [invoke(budget_pool, code_a, {}, key=a) for _ in range(2)]  # A starts after B, then runs warm
    assert [o.output["mark"] for o in out_a] == ["fnA", "fnA"] and not out_a[1].cold_start
    assert all(o.output["secret"] is None and "SECRET" not in o.output["env"] for o in out_a)
    b_secret = cfg_b.env["SECRET"].encode()
    b_pipes = pipe_ids(budget_pool, b)
    b_dirs = budget_pool._dirs[b]  # noqa: SLF001 - B's directories on the host
    b_paths = {str(b_dirs.code), str(b_dirs.work)}
    a_pids = budget_pool.warm_pids(a)
    assert a_pids and b_pipes
    for pid in a_pids:
        targets = fd_targets(pid)
        assert not targets & b_pipes, f"A's process {pid} holds B's pipes"
        assert not any(t.startswith(p) for t in targets for p in b_paths), f"A's process {pid} opened B's files"
        assert b_secret not in Path(f"/proc/{pid}/environ").read_bytes()
        cwd = os.readlink(f"/proc/{pid}/cwd")
        assert not any(cwd.startswith(p) for p in b_paths)
    assert json.dumps(out_a[1].output).find(b_secret.decode()) == -1


def test_ledger_plan_orders_by_last_use_and_counts_each_worker_once(tmp_path: Path) -> None:
    from cluster.sandbox.warm import WarmEntry, WarmState

    me = os.getpid()
    kids = [WarmEntry(pid=1000 + i, key=f"k{i}", host=me, pss_kib=100, used=float(i)) for i in range(5)]
    state = WarmState(kids, {me: ("task_worker", 1000)}, 0)
    assert state.plan(1000 + 300) == {1000, 1001}  # the worker (once) and the three most recent children
    assert state.plan(0) == {1000, 1001, 1002, 1003}  # never the most recently used
    with_busy = [*kids[1:3], WarmEntry(1099, "kb", me, 100, 0.0, busy=True)]
    assert WarmState(with_busy, {me: ("task_worker", 1000)}, 0).plan(0) == {1001}  # a busy child is never evicted
    sizes = [WarmEntry(1, "new", me, 100, 3.0), WarmEntry(2, "big", me, 500, 2.0), WarmEntry(3, "old", me, 10, 1.0)]
    assert WarmState(sizes, {}, 0).plan(150) == {2, 3}  # strictly by age: the small old one does not jump ahead
    burst = [WarmEntry(1, "a", me, 100, 5.0), WarmEntry(2, "a", me, 100, 4.0), WarmEntry(3, "b", me, 100, 3.0)]
    assert WarmState(burst, {}, 0).plan(250) == {2}  # a burst's extra child goes before another version's last
    ledger = WarmLedger(tmp_path)
    ledger.ensure()
    ledger.publish("task_worker", [WarmEntry(os.getpid(), "self", me, 10, 1.0)], 5)
    ledger.count_evictions(3)
    read = ledger.read()
    assert read.functions == 1 and read.evictions == 3 and read.hosts == {me: ("task_worker", 5)}
    ledger.withdraw()
    assert ledger.read().children == []
