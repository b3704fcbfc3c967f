"""Shared warm hosts: a few `cluster.executor.WarmHost` actors per replica (one per core by default), each
holding the warm sandboxed children of many versions.

A version always goes to the same host (chosen by its content hash), so its warm children are found again;
up to `slots` of its calls run there at once (each in its own child: a burst runs in parallel), the rest go
to Ray tasks in the version's runtime_env. A host is used once it answered a ping; every host is pinged each
PING_S from then on, so one that died while idle is found by its ping (and replaced), not by an invocation.
The host's memory budget (cluster.sandbox.warm) evicts its least recently used children; the hosts
themselves are actors, which Ray never reaps as idle. A version's bundle (an object ref) goes with its calls
to a host only until one of them has answered there: the host has it extracted then, and keeps the ref.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import ray

from serve_app.dispatch.runners import when_answered

log = logging.getLogger(__name__)
PING_S = 1.0  # how often each host is pinged (from its first use until the replica closes)


class Host:
    """One host actor and what this replica knows of it."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.ready = False
        self.dead = False
        self.pinging = False
        self.inflight = 0
        # versions whose bundle this host has extracted (a call of theirs answered): their calls go without the
        # bundle's object ref, whose borrowing Ray tracks per call (~60 µs of this replica's CPU each)
        self.bundles: set[str] = set()

    def kill(self) -> None:
        """Stop the actor (every version's warm children on it go with it)."""
        self.dead = True
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self.actor)


class HostRunner:
    """A batch of one version on its host (a `serve_app.runners.Runner`)."""

    cancel_kills_call = True  # the host kills the one child running a cancelled invocation

    def __init__(self, hosts: WarmHosts, host: Host, key: tuple[str, float], box: list[Any]) -> None:
        self.hosts = hosts
        self.host = host
        self.key = key
        self.box = box
        # the slot is taken when the runner is handed out, not at `submit`: a dispatcher pump hands out several
        # runners before any of their batches is submitted, and each must count against the version's slots
        host.inflight += 1
        hosts.inflight[key] += 1

    def submit(self, common: dict[str, Any], items: list[tuple[str, bytes]]) -> Any:
        """Send the batch to the host (`release` must follow, submitted or not)."""
        box = None if self.key[0] in self.host.bundles else self.box
        return self.host.actor.run.remote(self.key[0], box, common, items)

    def cancel(self, ref: Any, task_id: str) -> None:
        """Kill the child running that invocation (the call then returns it `cancelled`)."""
        self.host.actor.cancel.remote(task_id)

    def abort(self, ref: Any) -> None:
        """The call overran its backstop (the sandbox's own timeout did not end it): the host goes."""
        self.hosts.lost(self.host)
        self.host.kill()

    def failed(self) -> None:
        """The call raised (the host died, or is not trusted again): it goes; a new one replaces it."""
        self.hosts.lost(self.host)
        self.host.kill()

    def release(self) -> None:
        """The call ended (answered, unless `failed` or `abort` came first and the host is gone)."""
        if not self.host.dead:
            self.host.bundles.add(self.key[0])
        self.host.inflight -= 1
        self.hosts.inflight[self.key] -= 1
        if self.hosts.inflight[self.key] <= 0:
            del self.hosts.inflight[self.key]


class WarmHosts:
    """This replica's hosts, started on first demand and replaced when they die."""

    def __init__(self, make_host: Callable[[], Any], count: int, slots: int, host_concurrency: int) -> None:
        self.make_host = make_host
        self.count = max(1, count)
        self.slots = max(1, slots)
        self.host_concurrency = host_concurrency
        self.hosts: list[Host | None] = [None] * self.count
        self.inflight: Counter[tuple[str, float]] = Counter()
        self._pinger: asyncio.Task[None] | None = None

    def runner(self, key: tuple[str, float], box: list[Any]) -> HostRunner | None:
        """Where the version's next batch runs if its host can take it now; else None (starting the host
        if there is none)."""
        self._ensure_pinger()
        if self.inflight[key] >= self.slots:
            return None
        i = zlib.crc32(key[0].encode()) % self.count
        host = self.hosts[i]
        if host is None or host.dead:
            host = self._start(i)
        if host is None or not host.ready or host.inflight >= self.host_concurrency:
            return None
        return HostRunner(self, host, key, box)

    async def prewarm(self, key: tuple[str, float], box: list[Any], common: dict[str, Any], count: int) -> int:
        """Have `count` (at most `slots`) warm children of a version ready on its host; how many were started
        (0 if its host is not ready)."""
        host = self.hosts[zlib.crc32(key[0].encode()) % self.count]
        if host is None or host.dead or not host.ready:
            return 0
        started = int(await host.actor.prewarm.remote(key[0], box, common, min(count, self.slots)))
        host.bundles.add(key[0])  # it keeps the ref it was sent: later calls need not carry it
        return started

    def start_all(self) -> None:
        """Start every host now (at the replica's start), so that a version's first call finds its host ready
        instead of going to a Ray worker that must start for its runtime_env."""
        self._ensure_pinger()
        for i, h in enumerate(self.hosts):
            if h is None or h.dead:
                self._start(i)

    def lost(self, host: Host) -> None:
        """Forget a host that died (the next demand starts another)."""
        host.dead = True
        for i, h in enumerate(self.hosts):
            if h is host:
                self.hosts[i] = None

    def close(self) -> None:
        """Stop every host and the pings."""
        if self._pinger is not None:
            self._pinger.cancel()
        for h in self.hosts:
            if h is not None:
                h.kill()
        self.hosts = [None] * self.count

    def _start(self, i: int) -> Host | None:
        try:
            host = Host(self.make_host())
        except Exception:
            log.exception("could not start warm host %d", i)
            return None
        self.hosts[i] = host
        self._ping(host)
        return host

    def _ping(self, host: Host) -> None:
        if host.pinging or host.dead:
            return
        host.pinging = True

        def alive() -> None:
            host.pinging = False
            host.ready = True

        def gone(exc: BaseException | None) -> None:
            host.pinging = False
            log.warning("warm host is gone: %r", exc)
            self.lost(host)
            host.kill()

        when_answered(host.actor.ping.remote(), alive, gone)

    def _ensure_pinger(self) -> None:
        if self._pinger is None or self._pinger.done():
            for h in self.hosts:  # not pinged for a while: each must answer again before it gets a call
                if h is not None and not h.dead:
                    h.ready = False
                    self._ping(h)
            self._pinger = asyncio.get_running_loop().create_task(self._ping_loop())

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(PING_S)
            for h in self.hosts:
                if h is not None and not h.dead:
                    self._ping(h)
