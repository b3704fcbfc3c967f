"""One sandboxed child process: spawning it, talking to it with deadlines, killing and diagnosing it."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.models import FunctionConfig

from . import spec as childspec
from .cgroups import CgroupSet
from .context import InvocationContext
from .framing import ParentChannel
from .layout import KeyDirs, is_root

BOOTSTRAP = str(Path(__file__).with_name("bootstrap.py"))
MiB = 1 << 20
_counter = itertools.count()
# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so every child is forked from
# this one long-lived thread rather than from whichever (possibly short-lived) thread called invoke().
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cloudfn-sandbox-spawn")


@dataclass
class Exit:
    """How a child ended."""

    status: int | None  # raw wait status; None if it could not be reaped in time
    cpu_s: float
    maxrss_mb: float

    @property
    def signal(self) -> int | None:
        """Terminating signal, if any."""
        return os.WTERMSIG(self.status) if self.status is not None and os.WIFSIGNALED(self.status) else None

    def describe(self) -> str:
        """Human wording of the exit."""
        if self.status is None:
            return "did not exit"
        if self.signal is not None:
            return f"killed by signal {signal.Signals(self.signal).name}"
        return f"exited with code {os.WEXITSTATUS(self.status)}"


class Child:
    """A running bootstrap process for one key."""

    def __init__(self, key: str, proc: subprocess.Popen[bytes], cg: CgroupSet, config: FunctionConfig) -> None:
        self.key = key
        self.proc = proc
        self.pid = proc.pid
        self.cg = cg
        self.config = config
        assert proc.stdin is not None and proc.stdout is not None
        self.chan = ParentChannel(proc.stdin.fileno(), proc.stdout.fileno())
        self.cpu_hard = childspec.cpu_hard_s(config)
        self.cap = config.max_output_kb * 1024
        self.last_used = time.monotonic()
        self.cpu_total_s = 0.0
        self.cancelled = False
        self.dead = False
        self.exit: Exit | None = None
        self.isolation: dict[str, Any] = {}

    @classmethod
    def spawn(cls, key: str, dirs: KeyDirs, config: FunctionConfig, handler: str, ctx: InvocationContext) -> Child:
        """Start the bootstrap (as root it drops to the key's uid itself, after building namespaces)."""
        env = childspec.child_env(config, dirs, handler, ctx)
        cg = CgroupSet(dirs={})
        if is_root():
            tmpfs = 2 * config.max_file_mb * MiB
            cg = CgroupSet.create(f"{os.getpid()}-{next(_counter)}", config.memory_mb * MiB + tmpfs + 32 * MiB,
                                  config.max_processes + 8)

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-I", "-S", BOOTSTRAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, env=env, cwd="/", close_fds=True, process_group=0,
            )

        try:
            proc = _spawner.submit(popen).result()
        except BaseException:
            cg.remove()
            raise
        with contextlib.suppress(OSError):
            cg.add(proc.pid)
        return cls(key, proc, cg, config)

    def start(self, init: dict[str, Any], deadline: float) -> tuple[dict[str, Any], bytes]:
        """Send the init spec; the ready header and import-time logs."""
        self.chan.send(init, b"", deadline)
        header, _, logs = self.chan.recv(deadline, 0, self.cap + 4096)
        self.cpu_total_s = float(header.get("cpu_total_s", 0.0))
        return header, logs

    def call(self, ctx: dict[str, Any], event_json: bytes, deadline: float) -> tuple[dict[str, Any], bytes, bytes]:
        """One invocation round trip."""
        self.chan.send({"op": "invoke", "ctx": ctx}, event_json, deadline)
        return self.call_reply(deadline)

    def call_reply(self, deadline: float) -> tuple[dict[str, Any], bytes, bytes]:
        """The reply to one invocation already sent (alone or in a batch)."""
        header, body, logs = self.chan.recv(deadline, self.cap, self.cap + 4096)
        self.cpu_total_s = float(header.get("cpu_total_s", self.cpu_total_s))
        self.last_used = time.monotonic()
        return header, body, logs

    def reap(self, timeout: float) -> Exit | None:
        """Wait up to `timeout` for the process to exit; its status and rusage."""
        if self.exit is not None:
            return self.exit
        end = time.monotonic() + timeout
        while True:
            try:
                pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.exit = Exit(None, 0.0, 0.0)
                return self.exit
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                self.exit = Exit(status, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0)
                return self.exit
            if time.monotonic() >= end:
                return None
            time.sleep(0.002)

    def signal_kill(self) -> None:
        """SIGKILL the child, its process group and its cgroup, without touching its pipes (thread-safe)."""
        self.dead = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.cg.kill_all()

    def kill(self) -> Exit | None:
        """Signal-kill, reap and release the child; only by the thread that owns it. Never raises."""
        self.signal_kill()
        result = self.reap(2.0)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self.cg.remove()
        return result
