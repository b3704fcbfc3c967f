"""cgroup v1 groups: created with every limit applied, joined, emptied by kill_all, stale ones swept."""

from __future__ import annotations

import subprocess

from cluster.sandbox import cgroups

from .conftest import needs_root


@needs_root
def test_group_limits_kill_and_sweep() -> None:
    cg = cgroups.CgroupSet.create("999999999-1", 64 << 20, 5, 1.5)
    assert set(cg.controllers) >= {"memory", "pids", "cpu", "cpuacct"}, cg.controllers
    assert (cg.dirs["pids"] / "pids.max").read_text().strip() == "5"
    assert int((cg.dirs["memory"] / "memory.limit_in_bytes").read_text()) == 64 << 20
    assert (cg.dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "150000"
    proc = subprocess.Popen(["sleep", "60"])
    try:
        for d in cg.procs_dirs():
            (d / "cgroup.procs").write_text(str(proc.pid))
        assert cg.pids() == [proc.pid]
        cg.kill_all()
        assert proc.wait(timeout=5) == -9 and cg.pids() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cg.remove()
    assert not any(d.exists() for d in cg.dirs.values())
    again = cgroups.CgroupSet.create("999999999-2", 64 << 20, 5, 1.0)
    assert cgroups.sweep_stale() >= 1, "no process 999999999 exists, so its empty group is stale"
    assert not any(d.exists() for d in again.dirs.values())
