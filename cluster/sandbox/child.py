"""One sandboxed child process: spawning it, talking to it with deadlines, killing and diagnosing it."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.models import NODE_RUNTIME, FunctionConfig

from . import egress, jail, mode, protocol, runtime, seccomp
from . import spec as childspec
from .cgroups import CgroupSet
from .framing import ParentChannel
from .layout import KeyDirs
from .measure import Measurement, Meter

BOOTSTRAP = str(Path(__file__).with_name("bootstrap.py"))
MiB = 1 << 20
MAX_SETUP_ERROR = 4096
V8_HEAP_EXHAUSTED = b"JavaScript heap out of memory"
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
        """Terminating signal, if any (bwrap reports its child's signal as exit code 128 + signal)."""
        if self.status is None:
            return None
        if os.WIFSIGNALED(self.status):
            return os.WTERMSIG(self.status)
        code = os.WEXITSTATUS(self.status)
        return code - 128 if 128 < code < 128 + 65 else None

    def describe(self) -> str:
        """Human wording of the exit."""
        if self.status is None:
            return "did not exit"
        if self.signal is not None:
            return f"killed by signal {signal.Signals(self.signal).name}"
        return f"exited with code {os.WEXITSTATUS(self.status)}"


@dataclass
class Reply:
    """One invocation's reply as the child sent it (checked) and its cost as the supervisor measured it."""

    header: dict[str, Any]
    body: bytes
    logs: bytes
    cost: Measurement


class Child:
    """A running bootstrap process for one key."""

    def __init__(self, key: str, proc: subprocess.Popen[bytes], cg: CgroupSet, config: FunctionConfig,
                 jailed: bool, node: NodePipes | None = None) -> None:
        self.key = key
        self.jailed = jailed
        self.proc = proc
        self.pid = proc.pid
        self.cg = cg
        self.config = config
        self.node = node
        if node is not None:
            self.chan = ParentChannel(node.to_child, node.from_child)
        else:
            assert proc.stdin is not None and proc.stdout is not None
            self.chan = ParentChannel(proc.stdin.fileno(), proc.stdout.fileno())
        self.meter = Meter(cg, proc.pid)
        self.egress: egress.Egress | None = None
        self.cpu_hard = childspec.cpu_hard_s(config)
        self.cap = config.max_output_kb * 1024
        self.last_used = time.monotonic()
        self.used_at = time.time()  # the same moment by the wall clock (comparable across processes)
        self.cancelled = False
        self.running: set[str] = set()  # request ids of the invocations it runs now (for `SandboxPool.cancel`)
        self.dead = False
        self.exit: Exit | None = None
        self.isolation: dict[str, Any] = {}
        self.out_of_memory = False

    @classmethod
    def spawn(cls, key: str, dirs: KeyDirs, config: FunctionConfig, root: Path) -> Child:
        """Start the bootstrap in its jail (or, in insecure mode, as a plain child); raises SandboxUnavailable
        when the jail cannot be applied and OSError when the process cannot start."""
        node = config.runtime == NODE_RUNTIME
        if mode.insecure():
            if node:
                try:
                    binary = runtime.node_source()
                except runtime.RuntimeUnavailable as exc:
                    raise mode.SandboxUnavailable(str(exc)) from exc
                return cls._start_node(key, config, CgroupSet({}), binary, None, None, [], jailed=False)
            return cls._start(key, config, CgroupSet({}), [sys.executable, "-I", "-S", "-B", BOOTSTRAP],
                              None, [], jailed=False)
        try:
            rt = runtime.ensure(root)
            nrt = runtime.ensure_node(root) if node else None
            bpf = seccomp.policy_fd()
        except (runtime.RuntimeUnavailable, seccomp.SeccompUnavailable) as exc:
            raise mode.SandboxUnavailable(str(exc)) from exc
        try:
            cg = CgroupSet.create(f"{os.getpid()}-{next(_counter)}", childspec.cgroup_memory_bytes(config),
                                  childspec.pids_limit(config), max(1.0, config.cpus))
        except Exception as exc:
            os.close(bpf)
            raise mode.SandboxUnavailable(str(exc)) from exc
        resolv = jail.data_fd(egress.RESOLV_CONF) if config.network else None
        procs = jail.open_procs_files(cg.procs_dirs())
        fds = [bpf] if resolv is None else [bpf, resolv]
        child: Child | None = None
        try:
            if nrt is not None:
                child = cls._start_node(key, config, cg, Path(nrt.executable), (rt, nrt, dirs, bpf, resolv), procs,
                                        fds, jailed=True)
            else:
                argv = jail.command(rt, dirs, tmp_mb=config.max_file_mb, seccomp_fd=bpf, resolv_fd=resolv)
                child = cls._start(key, config, cg, argv, jail.drop_privileges(dirs.uid, dirs.gid, procs), fds,
                                   jailed=True)
            cg.open_meters()
            if config.network:
                child.egress = egress.Egress.attach(egress.namespace_pid(cg.pids),
                                                    egress.allowed_networks(os.environ.get("CLOUDFN_EGRESS_ALLOW", "")),
                                                    procs)
        except (OSError, ValueError, egress.EgressUnavailable) as exc:
            if child is not None:
                child.kill()
            raise mode.SandboxUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            for fd in [bpf, *procs, *([] if resolv is None else [resolv])]:
                os.close(fd)
        return child

    @classmethod
    def _start(cls, key: str, config: FunctionConfig, cg: CgroupSet, argv: list[str],
               preexec: Callable[[], None] | None, fds: list[int], *, jailed: bool) -> Child:
        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE if jailed else
                subprocess.DEVNULL, env=dict(jail.FIXED_ENV), cwd="/", close_fds=True, pass_fds=fds,
                process_group=0, preexec_fn=preexec,
            )

        try:
            proc = _spawner.submit(popen).result()
        except BaseException:
            cg.kill_all()
            cg.remove()
            raise
        if proc.stderr is not None:
            os.set_blocking(proc.stderr.fileno(), False)
        return cls(key, proc, cg, config, jailed)

    @classmethod
    def _start_node(cls, key: str, config: FunctionConfig, cg: CgroupSet, binary: Path,
                    jailed_with: tuple[runtime.Runtime, runtime.NodeRuntime, KeyDirs, int, int | None] | None,
                    procs: list[int] | None, fds: list[int], *, jailed: bool) -> Child:
        """Start the Node.js bootstrap: the protocol on two inherited pipe fds, stdout and stderr on a log memfd
        (Node cannot move its own fds as the Python bootstrap does), rlimits applied before exec."""
        limits = childspec.rlimits(config)
        pipes = NodePipes.create()
        try:
            flags = childspec.node_flags(config)
            if jailed_with is not None:
                rt, nrt, dirs, bpf, resolv = jailed_with
                launch = jail.node_launch(nrt, flags, pipes.child_fds)
                argv = jail.command(rt, dirs, tmp_mb=config.max_file_mb, seccomp_fd=bpf, resolv_fd=resolv,
                                    launch=launch)
                preexec = jail.drop_privileges(dirs.uid, dirs.gid, procs or [], limits)
            else:
                argv = [str(binary), *flags, str(runtime.NODE_BOOTSTRAP), *map(str, pipes.child_fds)]
                preexec = _rlimits_step(limits)
            proc = cls._popen_node(argv, preexec, [*fds, *pipes.child_fds], pipes.log, cg)
        except BaseException:
            pipes.close()
            raise
        pipes.close_child_ends()
        return cls(key, proc, cg, config, jailed, pipes)

    @staticmethod
    def _popen_node(argv: list[str], preexec: Callable[[], None], fds: list[int], log: int,
                    cg: CgroupSet) -> subprocess.Popen[bytes]:
        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=dict(jail.FIXED_ENV),
                                    cwd="/", close_fds=True, pass_fds=fds, process_group=0, preexec_fn=preexec)

        try:
            return _spawner.submit(popen).result()
        except BaseException:
            cg.kill_all()
            cg.remove()
            raise

    def setup_error(self) -> str:
        """What the jail itself printed before the bootstrap took over (bwrap's own errors), if anything."""
        if self.node is not None:
            return self.node.tail(MAX_SETUP_ERROR).decode("utf-8", "replace").strip()
        if self.proc.stderr is None:
            return ""
        try:
            data = os.read(self.proc.stderr.fileno(), MAX_SETUP_ERROR)
        except (BlockingIOError, OSError, ValueError):
            return ""
        return data.decode("utf-8", "replace").strip()

    def start(self, init: dict[str, Any], deadline: float) -> tuple[dict[str, Any], bytes]:
        """Send the init spec; the ready header and import-time logs."""
        self.chan.send(init, b"", deadline)
        header, _, logs = self.chan.recv(deadline, 0, self.cap + 4096)
        protocol.check_ready(header)
        return header, logs

    def call(self, ctx: dict[str, Any], event_json: bytes, deadline: float) -> Reply:
        """One invocation round trip."""
        self.meter.mark()
        self.chan.send({"op": "invoke", "ctx": ctx}, event_json, deadline)
        return self.call_reply(deadline)

    def send_batch(self, ctxs: list[dict[str, Any]], events: list[bytes], timeout_s: float) -> None:
        """Several invocations in one request frame; their replies come one by one (`call_reply`)."""
        self.meter.mark()
        self.chan.send({"op": "batch", "ctxs": ctxs, "sizes": [len(e) for e in events], "timeout_s": timeout_s},
                       b"".join(events), time.monotonic() + timeout_s)

    def call_reply(self, deadline: float) -> Reply:
        """The reply to one invocation already sent (alone or in a batch), checked, with its measured cost;
        raises ProtocolViolation for a reply that breaks the protocol."""
        header, body, logs = self.chan.recv(deadline, self.cap, self.cap + 4096)
        cost = self.meter.read()
        protocol.check_reply(header)
        self.last_used, self.used_at = time.monotonic(), time.time()
        return Reply(header, body, logs, cost)

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

    def note_memory_exhaustion(self) -> None:
        """Record whether the child ran out of memory (the cgroup's OOM killer, or V8's last words on the log
        memfd: the JavaScript heap at its limit), while both can still be read."""
        self.out_of_memory = self.out_of_memory or self.cg.oom_killed() or (
            self.node is not None and V8_HEAP_EXHAUSTED in self.node.tail(65536))

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
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self.node is not None:
            self.node.close()
        if self.egress is not None:
            self.egress.close()
        self.cg.remove()
        self.meter.close()
        return result


def _rlimits_step(limits: dict[str, list[int]]) -> Callable[[], None]:
    """A pre-exec step that only sets rlimits (insecure mode: no jail, no uid drop)."""
    settings = [(getattr(resource, name), (soft, hard)) for name, (soft, hard) in limits.items()]

    def step() -> None:
        for res, pair in settings:
            resource.setrlimit(res, pair)

    return step


@dataclass
class NodePipes:
    """A Node.js child's protocol pipes and its stdout/stderr memfd (supervisor ends and child ends)."""

    to_child: int
    child_reads: int
    child_writes: int
    from_child: int
    log: int

    @classmethod
    def create(cls) -> NodePipes:
        """Two pipes and an append-only memfd, all close-on-exec (the child's ends are passed explicitly)."""
        r0, w0 = os.pipe2(os.O_CLOEXEC)
        r1, w1 = os.pipe2(os.O_CLOEXEC)
        log = os.memfd_create("cloudfn-node-log", os.MFD_CLOEXEC)
        fcntl.fcntl(log, fcntl.F_SETFL, fcntl.fcntl(log, fcntl.F_GETFL) | os.O_APPEND)
        return cls(w0, r0, w1, r1, log)

    @property
    def child_fds(self) -> tuple[int, int]:
        """The fds the child reads requests from and writes replies to."""
        return self.child_reads, self.child_writes

    def close_child_ends(self) -> None:
        """After the spawn: the supervisor keeps only its own ends (and the log memfd)."""
        for fd in (self.child_reads, self.child_writes):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child_reads = self.child_writes = -1

    def tail(self, n: int) -> bytes:
        """The last `n` bytes the child wrote to its stdout/stderr and has not collected yet."""
        try:
            size = os.fstat(self.log).st_size
            return os.pread(self.log, n, max(0, size - n))
        except OSError:
            return b""

    def close(self) -> None:
        """Close every fd still open."""
        for fd in (self.to_child, self.child_reads, self.child_writes, self.from_child, self.log):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.to_child = self.child_reads = self.child_writes = self.from_child = self.log = -1
