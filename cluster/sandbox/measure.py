"""What one invocation cost, measured by the supervisor from outside the child: wall time and timestamps on
the platform's clock, CPU time and memory high-water mark from the child's cgroup (or, without one, from
the child's /proc files). Nothing here trusts a number the child reports."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

from .cgroups import CgroupSet

MiB = 1 << 20
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass
class Measurement:
    """One invocation's cost."""

    started_at: float  # epoch seconds, platform clock
    finished_at: float
    duration_ms: float
    cpu_ms: float
    peak_memory_mb: float


class Meter:
    """Marks the start of an invocation and reads its cost at the end; one per child."""

    def __init__(self, cg: CgroupSet, pid: int) -> None:
        self.cg = cg
        self.pid = pid
        self._t0 = 0.0
        self._wall0 = 0.0
        self.cpu_at_mark = 0  # the group's CPU ns when the current invocation started
        self._use_cgroup = bool(cg.dirs)
        self._fresh = False  # counters read and reset by the last `read`, nothing run since
        self._stat_fd: int | None = None
        self._status_fd: int | None = None
        if not self._use_cgroup:
            with contextlib.suppress(OSError):
                self._stat_fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
                self._status_fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)

    def mark(self) -> None:
        """An invocation starts now (the CPU and peak counters are read and reset only if no `read` has done
        so since the child last ran: a warm child sits idle between invocations)."""
        if not self._fresh:
            self._reset_counters()
        self._fresh = False
        self._wall0 = time.time()
        self._t0 = time.perf_counter()

    def _reset_counters(self) -> None:
        if self._use_cgroup:
            self.cg.reset_peak()
        else:
            with contextlib.suppress(OSError), open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
        self.cpu_at_mark = self._cpu_ns()

    def read(self) -> Measurement:
        """The cost since `mark`; marks the next invocation's start (batches run back to back)."""
        t1 = time.perf_counter()
        wall1 = time.time()
        cpu1 = self._cpu_ns()
        peak = self._peak_bytes()
        out = Measurement(self._wall0, wall1, (t1 - self._t0) * 1000.0, max(0, cpu1 - self.cpu_at_mark) / 1e6,
                          peak / MiB)
        self._t0, self._wall0, self.cpu_at_mark = t1, wall1, cpu1
        if self._use_cgroup:
            self.cg.reset_peak()
            self._fresh = True
        return out

    def close(self) -> None:
        """Release the /proc fds."""
        for fd in (self._stat_fd, self._status_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._stat_fd = self._status_fd = None

    def _cpu_ns(self) -> int:
        if self._use_cgroup:
            try:
                return self.cg.cpu_ns()
            except (OSError, ValueError):
                return self.cpu_at_mark
        if self._stat_fd is None:
            return 0
        try:
            fields = os.pread(self._stat_fd, 1024, 0).rsplit(b")", 1)[1].split()
            ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        except (OSError, ValueError, IndexError):
            return self.cpu_at_mark
        return int(ticks * TICK_S * 1e9)

    def _peak_bytes(self) -> int:
        if self._use_cgroup:
            try:
                return self.cg.peak_bytes()
            except (OSError, ValueError):
                return 0
        if self._status_fd is None:
            return 0
        try:
            data = os.pread(self._status_fd, 8192, 0)
            at = data.find(b"VmHWM:")
            return int(data[at + 6 : data.index(b"kB", at)]) * 1024 if at >= 0 else 0
        except (OSError, ValueError):
            return 0
