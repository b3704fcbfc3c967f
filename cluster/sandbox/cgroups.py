"""One cgroup per child: memory, pids and CPU limits, the supervisor's measurements of the child from outside
(CPU time used, memory high-water mark, read and reset around each invocation), and a way to kill every
process the child started.

Two backends behind one interface. cgroup v1 (what these hosts have): a group per controller under the
supervisor's own group (`memory.limit_in_bytes`, `memory.max_usage_in_bytes`, `pids.max`,
`cpu.cfs_quota_us`, `cpuacct.usage`). cgroup v2, written against the kernel's documented interface
(Documentation/admin-guide/cgroup-v2.rst) but not exercised on these hosts, which have no v2 controllers:
one group under `/sys/fs/cgroup/cloudfn-sandbox/` (`memory.max`, `memory.swap.max`, `memory.peak`,
`pids.max`, `cpu.max`, `cpu.stat`, `cgroup.kill`). `create` raises `CgroupsUnavailable` when the limits
cannot all be applied: the jail fails closed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "cloudfn-sandbox"
CPU_PERIOD_US = 100_000


class CgroupsUnavailable(RuntimeError):
    """The memory, pids or CPU controller cannot be used for a child."""


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller ("" key: the v2 path)."""
    paths: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            for ctrl in ctrls.split(",") if ctrls else [""]:
                paths[ctrl] = path
    except (OSError, ValueError):
        pass
    return paths


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _pread_int(fd: int) -> int:
    return int(os.pread(fd, 64, 0).split()[0])


class CgroupSet:
    """A child's group(s); `dirs` maps a role ("memory", "pids", "cpu", "cpuacct", or "unified") to its dir."""

    def __init__(self, dirs: dict[str, Path], v2: bool = False) -> None:
        self.dirs = dirs
        self.v2 = v2
        self._cpu_fd: int | None = None
        self._peak_fd: int | None = None

    # -- creation -----------------------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, memory_bytes: int, pids_max: int, cpus: float) -> CgroupSet:
        """Make the child's group with every limit applied; raises CgroupsUnavailable."""
        if (ROOT / "memory").is_dir() and os.access(ROOT / "memory", os.W_OK):
            return cls._create_v1(name, memory_bytes, pids_max, cpus)
        if (ROOT / "cgroup.controllers").is_file():
            return cls._create_v2(name, memory_bytes, pids_max, cpus)
        raise CgroupsUnavailable("no writable cgroup v1 memory controller and no cgroup v2 hierarchy")

    @classmethod
    def _create_v1(cls, name: str, memory_bytes: int, pids_max: int, cpus: float) -> CgroupSet:
        own = _own_paths()
        quota = str(int(cpus * CPU_PERIOD_US))
        required: dict[str, list[tuple[str, str]]] = {
            "memory": [("memory.limit_in_bytes", str(memory_bytes))],
            "pids": [("pids.max", str(pids_max))],
            "cpu": [("cpu.cfs_period_us", str(CPU_PERIOD_US)), ("cpu.cfs_quota_us", quota)],
            "cpuacct": [],
        }
        optional = {"memory": [("memory.memsw.limit_in_bytes", str(memory_bytes)), ("memory.swappiness", "0")]}
        made = cls({})
        try:
            for ctrl, values in required.items():
                base = ROOT / ctrl / own.get(ctrl, "").lstrip("/")  # nested under ours: outer limits apply
                d = base / PARENT / name
                d.mkdir(parents=True, exist_ok=True)
                made.dirs[ctrl] = d
                for fname, value in values:
                    _write(d / fname, value)
                for fname, value in optional.get(ctrl, []):  # swap accounting may be off: no swap then
                    with contextlib.suppress(OSError):
                        _write(d / fname, value)
        except OSError as exc:
            made.remove()
            raise CgroupsUnavailable(f"cgroup v1: {exc}") from exc
        return made

    @classmethod
    def _create_v2(cls, name: str, memory_bytes: int, pids_max: int, cpus: float) -> CgroupSet:
        parent = ROOT / PARENT
        try:
            parent.mkdir(exist_ok=True)
            _write(ROOT / "cgroup.subtree_control", "+memory +pids +cpu")
            _write(parent / "cgroup.subtree_control", "+memory +pids +cpu")
            d = parent / name
            d.mkdir(exist_ok=True)
        except OSError as exc:
            raise CgroupsUnavailable(f"cgroup v2: {exc}") from exc
        made = cls({"unified": d}, v2=True)
        try:
            _write(d / "memory.max", str(memory_bytes))
            with contextlib.suppress(OSError):
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", str(pids_max))
            _write(d / "cpu.max", f"{int(cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        except OSError as exc:
            made.remove()
            raise CgroupsUnavailable(f"cgroup v2: {exc}") from exc
        return made

    # -- membership and killing ---------------------------------------------------------------------------

    @property
    def controllers(self) -> list[str]:
        """Which controllers apply."""
        return sorted(self.dirs)

    def procs_dirs(self) -> list[Path]:
        """Each distinct group directory (a process joins every one)."""
        return list(dict.fromkeys(self.dirs.values()))

    def pids(self) -> list[int]:
        """Every process still in the group."""
        for d in self.procs_dirs():
            try:
                return [int(x) for x in (d / "cgroup.procs").read_text().split()]
            except OSError:
                continue
        return []

    def kill_all(self, timeout: float = 2.0) -> None:
        """SIGKILL everything in the group until it is empty (pids.max bounds a fork race)."""
        if self.v2:
            with contextlib.suppress(OSError):
                _write(self.dirs["unified"] / "cgroup.kill", "1")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def remove(self) -> None:
        """Delete the groups (after kill_all) and close the measurement fds."""
        for fd in (self._cpu_fd, self._peak_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._cpu_fd = self._peak_fd = None
        for d in self.procs_dirs():
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)

    # -- measurement from outside -------------------------------------------------------------------------

    def open_meters(self) -> None:
        """Open the CPU usage and memory peak files once (each reading is then one pread)."""
        if self.v2:
            d = self.dirs["unified"]
            self._cpu_fd = os.open(d / "cpu.stat", os.O_RDONLY | os.O_CLOEXEC)
            self._peak_fd = os.open(d / "memory.peak", os.O_RDWR | os.O_CLOEXEC)
        else:
            self._cpu_fd = os.open(self.dirs["cpuacct"] / "cpuacct.usage", os.O_RDONLY | os.O_CLOEXEC)
            self._peak_fd = os.open(self.dirs["memory"] / "memory.max_usage_in_bytes", os.O_RDWR | os.O_CLOEXEC)

    def cpu_ns(self) -> int:
        """CPU time used by every process of the group so far, in nanoseconds."""
        if self._cpu_fd is None:
            return 0
        if self.v2:
            data = os.pread(self._cpu_fd, 512, 0)
            at = data.find(b"usage_usec ")
            return int(data[at + 11 : data.index(b"\n", at)]) * 1000 if at >= 0 else 0
        return _pread_int(self._cpu_fd)

    def reset_peak(self) -> None:
        """Start a new memory high-water mark at the current usage."""
        if self._peak_fd is not None:
            with contextlib.suppress(OSError):  # v2 before Linux 6.12 cannot reset memory.peak
                os.pwrite(self._peak_fd, b"0" if not self.v2 else b"reset", 0)

    def peak_bytes(self) -> int:
        """The group's memory high-water mark since the last reset."""
        return _pread_int(self._peak_fd) if self._peak_fd is not None else 0

    def oom_killed(self) -> bool:
        """True if the memory controller killed something or refused memory."""
        if self.v2:
            path, key = self.dirs["unified"] / "memory.events", "oom_kill"
        elif "memory" in self.dirs:
            path, key = self.dirs["memory"] / "memory.oom_control", "oom_kill"
        else:
            return False
        try:
            for line in path.read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == key and int(v) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False


def sweep_stale() -> int:
    """Remove empty child groups left by supervisors that died without cleaning up; how many went."""
    own = _own_paths()
    removed = 0
    parents = [ROOT / ctrl / own.get(ctrl, "").lstrip("/") / PARENT for ctrl in ("memory", "pids", "cpu", "cpuacct")]
    parents.append(ROOT / PARENT)
    for parent in dict.fromkeys(parents):
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
