"""This replica's lease, renewed in a loop, the live replicas it knows of, and each function's home among them.

A function's invocations are dispatched by one replica, its home (rendezvous hashing over the live replicas), so
its `max_concurrency`, `max_queue` and queue order hold across replicas as they do in one; another replica that
accepts an invocation commits its row owned by the home and hands it over (core.db.leases, HANDOFF_CHANNEL). A
replica becomes a home only once it has been live for MATURE_S, by which time every other replica has seen it:
a replica starting does not take functions away from one that is still dispatching them under the old view.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import Callable

from core.db.leases import ReplicaLeases

log = logging.getLogger(__name__)
LEASE_S = 10.0  # a replica that has not renewed for this long has its open tasks claimed by another
RENEW_S = 2.0  # how often the lease is renewed and the live replicas re-read
MATURE_S = 2 * RENEW_S + 1.0


def replica_name() -> str:
    """Serve's replica id inside a Serve replica; host and pid when the app is served otherwise (tests)."""
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # not inside a Serve replica
        return f"{socket.gethostname()}-{os.getpid()}"


def rendezvous(replicas: list[str], key: str) -> str:
    """The replica with the highest hash of (replica, key): the same answer on every replica with the same view,
    and only the keys of a replica that leaves or joins move."""
    return max(replicas, key=lambda r: hashlib.blake2b(f"{r}\0{key}".encode(), digest_size=8).digest())


class Membership:
    """Lease renewal and the view of live replicas; `exclusive`: the only replica (every function is homed
    here, and a lapsed lease is simply renewed)."""

    def __init__(self, leases: ReplicaLeases, *, exclusive: bool, on_lapse: Callable[[], None],
                 on_view: Callable[[int], None] = lambda live: None, name: Callable[[], str] = lambda: "") -> None:
        self.leases = leases
        self.me = leases.me
        self.exclusive = exclusive
        self.on_lapse = on_lapse  # the lease ran out before it was renewed: another replica may hold our tasks
        self.on_view = on_view  # the number of live replicas, after every refresh
        self.name = name
        self.homes: list[str] = [self.me]  # the live replicas that are homes, sorted
        self.live: list[str] = [self.me]
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register this replica's lease and read the live replicas; then keep both fresh."""
        await self.leases.renew(self.name())
        await self.refresh()
        self._loop = asyncio.get_running_loop().create_task(self._renew_loop())

    async def close(self, *, release: bool) -> None:
        """Stop renewing; with `release`, end the lease now (this replica holds no open task any more)."""
        if self._loop is not None:
            self._loop.cancel()
        if release:
            try:
                await self.leases.release()
            except Exception as exc:  # the lease then runs out by itself
                log.warning("replica lease not released: %r", exc)

    async def refresh(self) -> None:
        """Re-read the live replicas and which of them are homes."""
        live = await self.leases.live(MATURE_S)
        self.live = sorted({r for r, _ in live} | {self.me})
        mature = sorted(r for r, ok in live if ok)
        self.homes = mature or self.live[:1]  # all starting together: the first by id, the same everywhere
        self.on_view(1 if self.exclusive else len(self.live))

    def home(self, namespace: str, function: str) -> str:
        """The replica that dispatches this function's invocations."""
        if self.exclusive or len(self.homes) == 1:
            return self.homes[0] if not self.exclusive else self.me
        return rendezvous(self.homes, f"{namespace}/{function}")

    def leads(self) -> bool:
        """Whether this replica does the one-at-a-time chores (the lake's compaction) now: the first live replica
        by id (views agree within RENEW_S; the local lake's compaction also holds an exclusive lock)."""
        return self.exclusive or self.live[0] == self.me

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(RENEW_S)
            try:
                kept = await self.leases.renew(self.name())
                await self.refresh()
            except Exception as exc:  # the database may be restarting: the lease has LEASE_S to spare
                log.warning("replica lease not renewed: %r", exc)
                continue
            if not kept and not self.exclusive:
                log.error("this replica's lease ran out before it was renewed; other replicas may have taken its "
                          "tasks over")
                self.on_lapse()


def exit_replica() -> None:
    """End this process at once, so that Serve starts a fresh replica: one whose lease ran out cannot know which
    of its tasks another replica took over (the writer already refuses to end them), so it keeps none."""
    log.critical("exiting: this API replica's lease ran out and its tasks may be held by another replica")
    os._exit(70)
