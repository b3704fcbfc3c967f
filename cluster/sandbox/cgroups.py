"""Optional cgroup v1 groups per child (memory and pids): a hard memory ceiling, a task cap, and a way to
kill every process the child started, even those that left its process group. Absent or read-only
controllers are skipped; `CgroupSet.create` returns what it could make."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

V1 = Path("/sys/fs/cgroup")
PARENT = "cloudfn-sandbox"


def _own_paths() -> dict[str, str]:
    """This process's cgroup v1 path per controller."""
    paths: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            for ctrl in ctrls.split(","):
                paths[ctrl] = path
    except (OSError, ValueError):
        pass
    return paths


class CgroupSet:
    """The memory and/or pids cgroup of one child."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs

    @classmethod
    def create(cls, name: str, memory_bytes: int, pids_max: int) -> CgroupSet:
        """Make whichever controllers are writable; never raises."""
        dirs: dict[str, Path] = {}
        settings = {"memory": ("memory.limit_in_bytes", memory_bytes), "pids": ("pids.max", pids_max)}
        own = _own_paths()
        for ctrl, (fname, value) in settings.items():
            base = V1 / ctrl / own.get(ctrl, "").lstrip("/")  # nested under ours: outer limits still apply
            if not os.access(base, os.W_OK):
                continue
            d = base / PARENT / name
            try:
                d.mkdir(parents=True, exist_ok=True)
                (d / fname).write_text(str(value))
                if ctrl == "memory":
                    with contextlib.suppress(OSError):
                        (d / "memory.swappiness").write_text("0")
                dirs[ctrl] = d
            except OSError:
                with contextlib.suppress(OSError):
                    d.rmdir()
        return cls(dirs)

    @property
    def controllers(self) -> list[str]:
        """Which controllers apply."""
        return sorted(self.dirs)

    def add(self, pid: int) -> None:
        """Move a process into every group."""
        for d in self.dirs.values():
            (d / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        """Every process still in the group."""
        for d in self.dirs.values():
            try:
                return [int(x) for x in (d / "cgroup.procs").read_text().split()]
            except OSError:
                continue
        return []

    def kill_all(self, timeout: float = 2.0) -> None:
        """SIGKILL everything in the group until it is empty (pids.max bounds a fork race)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def oom_killed(self) -> bool:
        """True if the memory controller killed something or refused memory."""
        d = self.dirs.get("memory")
        if d is None:
            return False
        try:
            for line in (d / "memory.oom_control").read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill" and int(v) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def remove(self) -> None:
        """Delete the groups (after kill_all)."""
        for d in self.dirs.values():
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def sweep_stale() -> int:
    """Remove empty child groups left by supervisors that died without cleaning up; how many went."""
    own = _own_paths()
    removed = 0
    for ctrl in ("memory", "pids"):
        parent = V1 / ctrl / own.get(ctrl, "").lstrip("/") / PARENT
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for d in entries:
            owner = d.name.partition("-")[0]
            if not d.is_dir() or not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue
            try:
                if not (d / "cgroup.procs").read_text().strip():
                    d.rmdir()
                    removed += 1
            except OSError:
                pass
    return removed
