"""cgroup v1 groups: created with limits, emptied by kill_all, stale ones swept."""

from __future__ import annotations

import subprocess

from cluster.sandbox import cgroups

from .conftest import needs_root


@needs_root
def test_group_limits_kill_and_sweep() -> None:
    cg = cgroups.CgroupSet.create("999999999-1", 64 << 20, 5)
    assert cg.controllers, "cgroup v1 memory/pids should be writable as root on this host"
    if "pids" in cg.dirs:
        assert (cg.dirs["pids"] / "pids.max").read_text().strip() == "5"
    proc = subprocess.Popen(["sleep", "60"])
    cg.add(proc.pid)
    assert cg.pids() == [proc.pid]
    cg.kill_all()
    assert proc.wait(timeout=5) == -9 and cg.pids() == []
    assert cgroups.sweep_stale() >= 1, "no process 999999999 exists, so its empty group is stale"
    assert not any(d.exists() for d in cg.dirs.values())
