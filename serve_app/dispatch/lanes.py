"""Express lanes: one warm executor actor (`cluster.executor.WarmExecutor`) per short, recently used version.

The dispatcher sends a short version's invocations to its lane when the lane is idle, and to Ray tasks
otherwise, so one-at-a-time callers get an actor call's latency and bursts keep the tasks' parallelism.
A lane is started on first demand (its worker takes about a second to start; until it answers, tasks
serve), probed with an empty call when it was idle for PROBE_AFTER_S (so an actor that died while idle is
found by the probe, not by an invocation), stopped after `idle_s` without use, and dropped if its actor
dies (the next demand starts another).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import ray

from serve_app.dispatch.runners import when_answered

log = logging.getLogger(__name__)
MAX_LANES = 8  # per replica: each lane is a worker process; when all are taken, one idle for EVICT_AFTER_S makes
EVICT_AFTER_S = 60.0  # room (never a busier one: starting an actor costs about a second of CPU)
PROBE_AFTER_S = 2.0  # a lane unused this long answers an empty call before it gets an invocation again


class Lane:
    """One version's actor and whether it can take a call now (a `serve_app.dispatch.runners.Runner`)."""

    cancel_kills_call = False  # short, like a batch: a cancelled invocation in a lane is left to finish

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.ready = False
        self.busy = False
        self.dead = False
        self.calls = 0
        self.last_used = time.monotonic()

    def submit(self, common: dict[str, Any], items: list[tuple[str, bytes]]) -> Any:
        """Send a batch; the caller must `release` once its result (or failure) is in."""
        self.busy = True
        self.calls += 1
        return self.actor.run.remote(common, items)

    def release(self) -> None:
        """The lane's call ended."""
        self.busy = False
        self.last_used = time.monotonic()

    def cancel(self, ref: Any, task_id: str) -> None:
        """Never called: a lane's calls are not killed for one invocation (`cancel_kills_call` is False)."""

    def kill(self) -> None:
        """Stop the actor (a call that failed or overran: its worker is not trusted again)."""
        self.dead = True
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self.actor)

    def abort(self, ref: Any) -> None:
        """The call overran its backstop: the actor goes (a new lane replaces it on demand)."""
        self.kill()

    def failed(self) -> None:
        """The call raised: the actor goes."""
        self.kill()


class Lanes:
    """The lanes of this replica, keyed like the versions' remotes (content hash, CPUs)."""

    def __init__(self, make_actor: Callable[[tuple[str, float]], Any], idle_s: float) -> None:
        self.make_actor = make_actor
        self.idle_s = idle_s
        self.lanes: dict[tuple[str, float], Lane] = {}
        self._reaped_at = time.monotonic()

    def idle(self, key: tuple[str, float]) -> Lane | None:
        """The version's lane if it can take a call now; else None (starting one if there is none)."""
        self._reap()
        lane = self.lanes.get(key)
        if lane is not None and lane.dead:
            del self.lanes[key]
            lane = None
        if lane is None:
            self._start(key)
            return None
        if not lane.ready or lane.busy:
            return None
        if time.monotonic() - lane.last_used > PROBE_AFTER_S:
            self._probe(key, lane)  # idle a while: make sure it still lives before trusting it with a call
            return None
        return lane

    def drop(self, key: tuple[str, float], lane: Lane) -> None:
        """Forget a lane (its actor died or was killed) and kill its actor if it still runs."""
        if self.lanes.get(key) is lane:
            del self.lanes[key]
        lane.kill()

    def close(self) -> None:
        """Stop every lane."""
        for key, lane in list(self.lanes.items()):
            self.drop(key, lane)

    def _start(self, key: tuple[str, float]) -> None:
        if len(self.lanes) >= MAX_LANES:
            cutoff = time.monotonic() - EVICT_AFTER_S
            idle = [(lane.last_used, k) for k, lane in self.lanes.items() if not lane.busy and lane.last_used < cutoff]
            if not idle:
                return  # tasks serve this version
            oldest = min(idle)[1]
            self.drop(oldest, self.lanes[oldest])
        try:
            lane = Lane(self.make_actor(key))
        except Exception:
            log.exception("could not start the express lane of %s", key[0][:12])
            return
        self.lanes[key] = lane
        self._probe(key, lane)

    def _probe(self, key: tuple[str, float], lane: Lane) -> None:
        """An empty call: the lane is ready once it answers, dropped if it fails."""
        lane.ready = False

        def alive() -> None:
            lane.ready = True
            lane.last_used = time.monotonic()

        def gone(exc: BaseException | None) -> None:
            log.warning("express lane of %s is gone: %r", key[0][:12], exc)
            self.drop(key, lane)

        when_answered(lane.actor.run.remote({}, []), alive, gone)

    def _reap(self) -> None:
        now = time.monotonic()
        if now - self._reaped_at < min(30.0, self.idle_s):
            return
        self._reaped_at = now
        for key, lane in list(self.lanes.items()):
            if not lane.busy and now - lane.last_used > self.idle_s:
                self.drop(key, lane)
