"""Express lanes against real Ray actors: start on demand, probe, capacity and eviction, death."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cluster.executor import WarmExecutor
from serve_app.dispatch import lanes as lanes_mod
from serve_app.dispatch.lanes import Lanes


async def until(pred: Any, timeout: float = 60.0) -> Any:
    """Poll (yielding to the loop) until pred() is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_lanes_start_on_demand_respect_their_cap_and_replace_the_dead(
        ray_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes_mod, "MAX_LANES", 1)
    started: list[tuple[str, float]] = []

    def make(key: tuple[str, float]) -> Any:
        started.append(key)
        return WarmExecutor.remote()  # type: ignore[attr-defined]

    async def scenario() -> None:
        lanes = Lanes(make, idle_s=600.0)
        a, b = ("a" * 64, 0.25), ("b" * 64, 0.25)
        assert lanes.idle(a) is None and started == [a]  # first demand starts it; tasks serve meanwhile
        lane_a = await until(lambda: lanes.idle(a))
        assert lane_a.ready and not lane_a.busy
        ref = lane_a.submit({}, [])
        assert lanes.idle(a) is None  # busy: the next call goes to a task
        assert await ref == []
        lane_a.release()
        assert lanes.idle(a) is lane_a
        # at the cap, a lane used recently is not evicted for another version
        assert lanes.idle(b) is None and started == [a] and list(lanes.lanes) == [a]
        lane_a.last_used -= lanes_mod.EVICT_AFTER_S + 1
        assert lanes.idle(b) is None and started == [a, b] and list(lanes.lanes) == [b]
        assert lane_a.dead
        lane_b = await until(lambda: lanes.idle(b))
        # idle a while: probed before the next call; a dead actor is found by the probe and replaced
        import ray

        ray.kill(lane_b.actor)
        lane_b.last_used -= lanes_mod.PROBE_AFTER_S + 1
        assert lanes.idle(b) is None  # probing
        # the probe fails once Ray reports the actor dead: slow on a crowded session cluster
        await until(lambda: b not in lanes.lanes or lanes.lanes[b] is not lane_b, timeout=180.0)
        assert lanes.idle(b) is None and started == [a, b, b]
        lane_b2 = await until(lambda: lanes.idle(b))
        assert lane_b2 is not lane_b and await lane_b2.submit({}, []) == []
        lane_b2.release()
        lanes.close()
        assert not lanes.lanes

    asyncio.run(scenario())
