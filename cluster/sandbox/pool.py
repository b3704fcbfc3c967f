"""The pool of warm sandboxed children, keyed by function version: invoke, activation check, kill, reaping."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.models import ExecutionOutcome, FunctionConfig, TaskStatus, check_handler
from core.settings import get_settings

from . import cgroups, layout, mode
from .child import Child, Reply
from .context import InvocationContext
from .framing import ChannelClosed, ChannelTimeout, ProtocolViolation
from .outcome import death_error, err, failure, from_reply, join_logs
from .spec import init_message
from .warm import WarmEntry, WarmLedger, default_root, pss_kib

HOST_MAX_WARM = 2048  # idle children a shared warm host keeps at most (the memory budget is what binds first)
BUDGET_TICK_S = 1.0  # how often a pool with a memory budget publishes its warm children and evicts
PLAN_RELAXED_S = 5.0  # how often it reads the host's ledger while the host is under 80 % of the budget
PSS_REFRESH_S = 15.0  # how long a measured PSS (a child's, the worker's) is reused before it is read again


class SandboxPool:
    """One per Ray worker process (module-level singleton via get_pool()); warm children keyed by `key`.

    With `budget_mb`, the pool publishes its warm children to the host's ledger (`warm.WarmLedger`) and evicts
    its own least recently used ones whenever the host's warm memory (children's and their workers' PSS)
    exceeds the budget; `host_kind` names the worker in the ledger (task_worker, express_lane)."""

    def __init__(self, root: Path, idle_ttl_s: float = 600.0, max_warm: int = 16, *, budget_mb: float | None = None,
                 host_kind: str = "task_worker") -> None:
        self.root = Path(root)
        self.idle_ttl_s = idle_ttl_s
        self.max_warm = max_warm
        self.budget_mb = budget_mb
        self.host_kind = host_kind
        self.ledger = WarmLedger(self.root)
        self.evictions = 0  # children this pool evicted for the budget
        self._plan_at = 0.0  # when the host's ledger is read next (monotonic)
        self._pss: dict[int, tuple[int, float]] = {}  # pid (a child's, or this worker's) -> (PSS KiB, measured at)
        self._lock = threading.Lock()
        self._idle: OrderedDict[Child, None] = OrderedDict()  # least recently used first
        self._busy: set[Child] = set()
        self._dirs: dict[str, layout.KeyDirs] = {}
        self._dirs_lock = threading.Lock()
        self._root_ready = False
        self._closed = False
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    # -- public API ---------------------------------------------------------------------------------------

    def invoke(self, *, key: str, code_dir: Path, handler: str, config: FunctionConfig,
               event_json: bytes, context: InvocationContext) -> ExecutionOutcome:
        """Run one invocation in the key's warm child (starting one if needed); never raises for user faults."""
        nin = len(event_json)
        child = self._checkout(key, config)
        cold = child is None
        init_logs = b""
        init_ms = None
        if child is None:
            started_child = self._cold_start(key, code_dir, handler, config, context, nin)
            if isinstance(started_child, ExecutionOutcome):
                return started_child
            child, init_ms, init_logs = started_child
        child.running = {context.aws_request_id}
        started = time.time()
        try:
            reply = child.call(context.to_wire(), event_json, time.monotonic() + config.timeout_s)
        except ChannelTimeout:
            return self._lost(child, config, started, nin, cold, init_logs, timed_out=True, why="")
        except (ChannelClosed, ProtocolViolation) as exc:
            return self._lost(child, config, started, nin, cold, init_logs, timed_out=False, why=str(exc),
                              protocol=isinstance(exc, ProtocolViolation))
        out = self._finish(child, reply, nin, [init_logs] if init_logs else [])
        out.cold_start = cold
        if init_ms is not None:
            out.extra["init_ms"] = init_ms
        return out

    def invoke_many(self, *, key: str, code_dir: Path, handler: str, config: FunctionConfig,
                    calls: list[tuple[bytes, InvocationContext]]) -> list[ExecutionOutcome]:
        """Several invocations of one key, one after another in one warm child, each measured, limited and
        timed out on its own: one request frame for all, one reply frame per invocation as it ends (a
        round trip less per invocation). If the child dies or retires mid-batch, the rest run singly."""
        if len(calls) <= 1:
            return [self.invoke(key=key, code_dir=code_dir, handler=handler, config=config, event_json=e,
                                context=c) for e, c in calls]
        child = self._checkout(key, config)
        if child is None:  # the first invocation starts the child; the rest share it
            event, context = calls[0]
            first = self.invoke(key=key, code_dir=code_dir, handler=handler, config=config, event_json=event,
                                context=context)
            return [first, *self.invoke_many(key=key, code_dir=code_dir, handler=handler, config=config,
                                             calls=calls[1:])]
        outs: list[ExecutionOutcome] = []
        child.running = {c.aws_request_id for _, c in calls}
        started = time.time()
        try:
            child.send_batch([c.to_wire() for _, c in calls], [e for e, _ in calls], config.timeout_s)
        except (ChannelTimeout, ChannelClosed) as exc:
            outs.append(self._lost(child, config, started, len(calls[0][0]), False, b"",
                                   timed_out=isinstance(exc, ChannelTimeout), why=str(exc)))
        else:
            for event, _ in calls:
                nin = len(event)
                try:
                    reply = child.call_reply(time.monotonic() + config.timeout_s)
                except ChannelTimeout:
                    outs.append(self._lost(child, config, started, nin, False, b"", timed_out=True, why=""))
                    break
                except (ChannelClosed, ProtocolViolation) as exc:
                    outs.append(self._lost(child, config, started, nin, False, b"", timed_out=False, why=str(exc),
                                           protocol=isinstance(exc, ProtocolViolation)))
                    break
                outs.append(self._finish(child, reply, nin, [], checkin=False))
                started = time.time()
                if child.dead:
                    break
            else:
                self._checkin(child)
        rest = calls[len(outs):]
        return outs + (self.invoke_many(key=key, code_dir=code_dir, handler=handler, config=config, calls=rest)
                       if rest else [])

    def prewarm(self, *, key: str, code_dir: Path, handler: str, config: FunctionConfig, count: int) -> int:
        """Start children of `key`, in parallel, until `count` of them are warm (each initialised as a cold start
        does: its jail made, the handler's module imported), so that a burst right after a version's activation
        finds them ready; the number started. A child that fails to start is dropped (its call then cold-starts
        and reports the failure)."""
        with self._lock:
            have = sum(1 for c in self._idle if c.key == key) + sum(1 for c in self._busy if c.key == key)
        need = max(0, min(count, self.max_warm) - have)
        if need == 0:
            return 0
        ctx = InvocationContext("prewarm", "0", "prewarm", config.memory_mb, "", "", "", time.time() + config.timeout_s)

        def start_one() -> int:
            started = self._cold_start(key, code_dir, handler, config, ctx, 0)
            if isinstance(started, ExecutionOutcome):
                return 0
            child = started[0]
            child.running = set()
            self._checkin(child)
            return 1

        with ThreadPoolExecutor(need, thread_name_prefix="cloudfn-prewarm") as pool:
            return sum(pool.map(lambda _: start_one(), range(need)))

    def check_handler(self, *, key: str, code_dir: Path, handler: str,
                      config: FunctionConfig) -> dict[str, Any] | None:
        """Activation gate: None if the handler imports and resolves to a callable taking 1 or 2 positional
        params; else {"type","message","stack"} of the failure. Runs in a fresh jail as the key's own uid, not
        warm. Raises SandboxUnavailable when the jail cannot be applied."""
        try:
            check_handler(handler, config.runtime)
        except ValueError as exc:
            return err("InvalidHandler", str(exc))
        self._ensure_root()
        dirs = layout.prepare(self.root, key, Path(code_dir), layout.allocate_uid(self.root, key), one_shot=True)
        ctx = InvocationContext("activation-check", "0", "activation-check", config.memory_mb, "", "", "",
                                time.time() + config.timeout_s)
        child: Child | None = None
        try:
            child = Child.spawn(key, dirs, config, self.root)
            ready, _ = child.start(init_message(config, dirs, handler, ctx, check_only=True, jailed=child.jailed),
                                   time.monotonic() + config.timeout_s)
        except ChannelTimeout:
            return err("TimeoutError", f"importing the handler took longer than {config.timeout_s:g} s")
        except (ChannelClosed, ProtocolViolation) as exc:
            assert child is not None
            return self._setup_failure(child, config, str(exc))
        except OSError as exc:
            return err("SandboxSetupFailed", f"could not start the sandbox: {exc}")
        finally:
            if child is not None:
                child.kill()
            layout.remove(dirs)
        if ready.get("ok"):
            return None
        error: dict[str, Any] = ready.get("error") or ready.get("setup_error") or err("SandboxCrashed", "no reply")
        return error

    def kill(self, key: str) -> None:
        """Kill that key's children, warm and busy (cancellation: a busy call returns `cancelled`)."""
        with self._lock:
            idle = [c for c in self._idle if c.key == key]
            for c in idle:
                del self._idle[c]
            busy = [c for c in self._busy if c.key == key]
            for c in busy:
                c.cancelled = True
        for c in busy:
            c.signal_kill()
        for c in idle:
            c.kill()

    def cancel(self, request_id: str) -> bool:
        """Kill the child running that invocation (it returns `cancelled`); False if none runs it here."""
        with self._lock:
            found = [c for c in self._busy if request_id in c.running]
            for c in found:
                c.cancelled = True
        for c in found:
            c.signal_kill()
        return bool(found)

    def close(self) -> None:
        """Kill every child and stop the reaper."""
        self._stop.set()
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), OrderedDict()
            busy = list(self._busy)
        for c in busy:
            c.signal_kill()
        for c in idle:
            c.kill()
        if self.budget_mb is not None:
            self.ledger.withdraw()

    def warm_pids(self, key: str) -> list[int]:
        """Every process of the key's idle warm children (their cgroups' members, or the children alone)."""
        with self._lock:
            children = [c for c in self._idle if c.key == key]
        return [p for c in children for p in (c.cg.pids() if c.cg.dirs else [c.pid])]

    def warm_count(self, key: str | None = None) -> int:
        """Idle warm children (for one key, or all)."""
        with self._lock:
            return sum(1 for c in self._idle if key is None or c.key == key)

    # -- internals ----------------------------------------------------------------------------------------

    def _ensure_root(self) -> None:
        if not self._root_ready:
            layout.ensure_root(self.root)
            if layout.is_root():
                cgroups.sweep_stale()
            self._root_ready = True

    def _key_dirs(self, key: str, code_dir: Path) -> layout.KeyDirs:
        with self._dirs_lock:  # a shared warm host starts children of many keys from many threads
            dirs = self._dirs.get(key)
            if dirs is None:
                self._ensure_root()
                dirs = layout.prepare(self.root, key, Path(code_dir), layout.allocate_uid(self.root, key))
                self._dirs[key] = dirs
            return dirs

    def _checkout(self, key: str, config: FunctionConfig) -> Child | None:
        stale: list[Child] = []
        found = None
        with self._lock:
            for child in reversed(self._idle):
                if child.key == key:
                    del self._idle[child]
                    if child.config is config or child.config == config:
                        found = child
                        self._busy.add(child)
                        break
                    stale.append(child)
                    break
        for c in stale:
            c.kill()
        return found

    def _checkin(self, child: Child) -> None:
        evicted: list[Child] = []
        with self._lock:
            self._busy.discard(child)
            if self._closed or child.dead:
                evicted.append(child)
            else:
                self._idle[child] = None
                while len(self._idle) > self.max_warm:
                    evicted.append(self._idle.popitem(last=False)[0])
            if self._reaper is None and not self._closed:
                self._reaper = threading.Thread(target=self._reap_loop, name="cloudfn-sandbox-reaper", daemon=True)
                self._reaper.start()
        for c in evicted:
            c.kill()

    def _discard(self, child: Child) -> None:
        with self._lock:
            self._busy.discard(child)
        child.kill()

    def _reap_loop(self) -> None:
        interval = max(0.05, min(self.idle_ttl_s / 2.0, 30.0))
        if self.budget_mb is not None:
            interval = min(interval, BUDGET_TICK_S)
        while not self._stop.wait(interval):
            cutoff = time.monotonic() - self.idle_ttl_s
            with self._lock:
                expired = [c for c in self._idle if c.last_used < cutoff]
                for c in expired:
                    del self._idle[c]
            for c in expired:
                c.kill()
            if self.budget_mb is not None:
                with contextlib.suppress(OSError):  # the ledger is unreadable right now: the next tick tries again
                    self.enforce_budget()

    def enforce_budget(self, *, now: bool = False) -> int:
        """Publish this pool's warm children to the host's ledger, then (each tick near the budget, every
        PLAN_RELAXED_S far under it, or `now`) evict those of its idle children the host-wide plan says must
        go; how many it evicted."""
        if self.budget_mb is None:
            return 0
        self._ensure_root()
        self.ledger.ensure()
        live = self._publish()
        tick = time.monotonic()
        if tick < self._plan_at and not now:
            return 0
        state = self.ledger.read()
        budget_kib = int(self.budget_mb * 1024)
        # far under the budget, the host's ledger (one file per warm child) is read only every PLAN_RELAXED_S
        self._plan_at = tick + (BUDGET_TICK_S if state.total_kib() > 0.8 * budget_kib else PLAN_RELAXED_S)
        evict = state.plan(budget_kib)
        with self._lock:
            victims = [c for c in self._idle if c.pid in evict]
            for c in victims:
                del self._idle[c]
        for c in victims:
            c.kill()
        if victims:
            self.evictions += len(victims)
            self.ledger.count_evictions(len(victims))
            live = self._publish()
        for pid in [p for p in self._pss if p not in live]:
            del self._pss[pid]
        return len(victims)

    def _publish(self) -> set[int]:
        """Write this pool's warm children (and its own PSS) to the ledger; the pids it published."""
        with self._lock:
            idle, busy = list(self._idle), list(self._busy)
        entries = [self._entry(c, busy=False) for c in idle] + [self._entry(c, busy=True) for c in busy]
        self.ledger.publish(self.host_kind, entries, self._measured(os.getpid(), lambda: [os.getpid()]))
        return {e.pid for e in entries} | {os.getpid()}

    def _entry(self, child: Child, *, busy: bool) -> WarmEntry:
        """A child as the ledger holds it (its PSS: every process of its cgroup, or the child alone)."""
        used = time.time() if busy else child.used_at
        pss = self._measured(child.pid, lambda: child.cg.pids() if child.cg.dirs else [child.pid])
        return WarmEntry(child.pid, child.key, os.getpid(), pss, round(used, 3), busy)

    def _measured(self, pid: int, pids: Callable[[], list[int]]) -> int:
        """The PSS (KiB) of the processes `pids()` lists, remembered under `pid` for PSS_REFRESH_S."""
        now = time.monotonic()
        hit = self._pss.get(pid)
        if hit is None or now - hit[1] > PSS_REFRESH_S:
            hit = self._pss[pid] = (sum(pss_kib(p) for p in pids()), now)
        return hit[0]

    def _finish(self, child: Child, reply: Reply, nin: int, log_parts: list[bytes], *,
                checkin: bool = True) -> ExecutionOutcome:
        """Turn a checked reply into an outcome; anything unexpected in it kills the child, never leaks it."""
        try:
            logs = join_logs([*log_parts, reply.logs], child.cap) if log_parts else \
                reply.logs.decode("utf-8", "replace")
            out = from_reply(reply, logs, nin)
        except Exception as exc:  # noqa: BLE001 - a reply that passed the checks yet cannot be used
            self._discard(child)
            return failure(TaskStatus.FAILED, err("SandboxProtocolError", f"unusable reply: {type(exc).__name__}"),
                           reply.cost.started_at, reply.cost.finished_at, "", nin)
        out.extra["isolation"] = child.isolation
        out.extra["sandbox"] = mode.label()
        if reply.header.get("retire"):
            self._discard(child)
        elif checkin:
            self._checkin(child)
        return out

    def _cold_start(self, key: str, code_dir: Path, handler: str, config: FunctionConfig,
                    context: InvocationContext, nin: int) -> tuple[Child, float, bytes] | ExecutionOutcome:
        """Spawn and initialise a child; on failure the outcome to return instead."""
        started = time.time()
        try:
            dirs = self._key_dirs(key, code_dir)
            child = Child.spawn(key, dirs, config, self.root)
        except mode.SandboxUnavailable as exc:
            return failure(TaskStatus.FAILED, err("SandboxUnavailable", f"the jail cannot be applied: {exc}"),
                           started, time.time(), "", nin)
        except OSError as exc:
            return failure(TaskStatus.FAILED, err("SandboxSetupFailed", f"could not start the sandbox: {exc}"),
                           started, time.time(), "", nin)
        child.running = {context.aws_request_id}
        with self._lock:
            self._busy.add(child)
        try:
            ready, logs = child.start(init_message(config, dirs, handler, context, check_only=False,
                                                   jailed=child.jailed), time.monotonic() + config.timeout_s)
        except ChannelTimeout:
            return self._lost(child, config, started, nin, True, b"", timed_out=True, why="during init")
        except (ChannelClosed, ProtocolViolation) as exc:
            setup = child.setup_error()
            out = self._lost(child, config, started, nin, True, b"", timed_out=False, why=str(exc),
                             protocol=isinstance(exc, ProtocolViolation))
            if setup and out.error is not None and out.error.get("type") == "SandboxCrashed":
                out.error = err("SandboxSetupFailed", f"the jail could not start: {setup}")
            return out
        child.isolation = {"sandbox": mode.label(), "jail": "bubblewrap" if child.jailed else None,
                           "uid": dirs.uid if child.jailed else os.getuid(),
                           "network": ("host" if not child.jailed else
                                       "public egress (slirp4netns + nftables)" if config.network else "none"),
                           "cgroups": child.cg.controllers, "seccomp": child.jailed}
        if not ready.get("ok"):
            self._discard(child)
            error = ready.get("error") or ready.get("setup_error") or err("SandboxCrashed", "no reply")
            out = failure(TaskStatus.FAILED, error, started, time.time(), logs.decode("utf-8", "replace"), nin)
            out.cold_start = True
            out.extra["isolation"] = child.isolation
            return out
        return child, float(ready.get("init_ms", 0.0)), logs

    def _setup_failure(self, child: Child, config: FunctionConfig, why: str) -> dict[str, Any]:
        """Why a child died before it answered: the jail's own message if it printed one, else its death."""
        exit = child.reap(0.5)
        child.note_memory_exhaustion()
        setup = child.setup_error()
        if setup:
            return err("SandboxSetupFailed", f"the jail could not start: {setup}")
        return death_error(child, exit, config, why)

    def _lost(self, child: Child, config: FunctionConfig, started: float, nin: int, cold: bool,
              init_logs: bytes, *, timed_out: bool, why: str, protocol: bool = False) -> ExecutionOutcome:
        """The child stopped answering (deadline, EOF) or broke the protocol: kill it and say why."""
        exit = None if timed_out or child.cancelled or protocol else child.reap(0.3)
        cpu_ns = child.cg.cpu_ns() if child.cg.dirs else 0
        child.note_memory_exhaustion()  # read before kill() removes the cgroup and closes the log memfd
        child.kill()
        exit = exit or child.exit
        with self._lock:
            self._busy.discard(child)
        if child.cancelled:
            status, error = TaskStatus.CANCELLED, err("Cancelled", "the invocation was cancelled")
        elif timed_out:
            status = TaskStatus.TIMED_OUT
            error = err("TimeoutError", f"Task timed out after {config.timeout_s:.2f} seconds")
        elif protocol:
            status, error = TaskStatus.FAILED, err("SandboxProtocolError",
                                                   f"the function's process broke the sandbox protocol ({why})")
        else:
            status, error = TaskStatus.FAILED, death_error(child, exit, config, why)
        out = failure(status, error, started, time.time(), join_logs([init_logs], child.cap), nin)
        out.cold_start = cold
        out.extra["isolation"] = child.isolation
        out.extra["sandbox"] = mode.label()
        if cpu_ns:
            out.cpu_ms = max(0.0, (cpu_ns - child.meter.cpu_at_mark) / 1e6)
        return out


_pool: SandboxPool | None = None
_pool_lock = threading.Lock()


def get_pool(host_kind: str = "task_worker") -> SandboxPool:
    """Process-wide pool (the first call names the worker's kind), under the host's memory budget."""
    global _pool
    with _pool_lock:
        if _pool is None:
            settings = get_settings()
            _pool = SandboxPool(default_root(), idle_ttl_s=float(max(settings.keep_warm_s, 1)),
                                max_warm=HOST_MAX_WARM if host_kind == "warm_host" else 16,
                                budget_mb=settings.warm_memory_mb, host_kind=host_kind)
            atexit.register(_pool.close)
        return _pool
