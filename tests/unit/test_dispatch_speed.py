"""How the dispatcher judges a version's speed (batching, waiting for a host slot rather than spilling): from the
handler's own time, not from time it spent runnable without a CPU."""

from __future__ import annotations

from typing import Any, cast

from core.models import FunctionConfig
from core.quotas import Quotas
from serve_app.catalog.registry import FunctionRuntime
from serve_app.dispatch.dispatcher import BATCH_SHORT_MS, Dispatcher
from serve_app.dispatch.quotas import QuotaGate
from serve_app.write.writer import TaskResult


def ran(handler_ms: float, cpu_wait_ms: float) -> TaskResult:
    """One execution's result as the executor reports it."""
    metrics: dict[str, Any] = {"duration_ms": handler_ms + 0.3, "cpu_wait_ms": cpu_wait_ms}
    return TaskResult(id="t", status="succeeded", output_json="{}", error=None, logs=None, started_at=0.0,
                      finished_at=0.0, attempt=1, metrics=metrics, handler_ms=handler_ms)


def version() -> FunctionRuntime:
    return FunctionRuntime(namespace="default", name="f", function_id=1, state="active", version=1,
                           sha256="0" * 64, handler="main.handler", config=FunctionConfig(), config_dict={})


def dispatcher() -> Dispatcher:
    quotas = Quotas(concurrency=64, queued_tasks=100, functions=10, bundle_bytes=10**6, invocations_per_s=10, burst=10)
    return Dispatcher(cast(Any, None), QuotaGate(quotas))  # judging speed writes nothing


def test_run_queue_wait_does_not_make_a_fast_version_read_as_slow() -> None:
    d, rt = dispatcher(), version()
    d._observe_speed(rt, [ran(0.05, 0.0)] * 5)
    assert d._fast(rt)
    # a no-op call that waited 48 ms for a CPU on a busy host (seen in a 2-replica burst): still fast
    d._observe_speed(rt, [ran(48.3, 48.2)])
    assert d._fast(rt)
    assert d._speed_of(rt)[1] <= BATCH_SHORT_MS


def test_a_handler_that_really_takes_long_reads_as_slow() -> None:
    d, rt = dispatcher(), version()
    d._observe_speed(rt, [ran(0.05, 0.0)] * 5)
    d._observe_speed(rt, [ran(50.0, 0.0)] * 3)  # its own time (a sleep, I/O) is not run-queue wait
    assert not d._fast(rt)
    d2, rt2 = dispatcher(), version()
    d2._observe_speed(rt2, [ran(50.0, 2.0)] * 3)
    assert not d2._fast(rt2)


def test_a_new_version_runs_like_its_function_until_it_has_run_itself() -> None:
    from dataclasses import replace

    d, v1 = dispatcher(), version()
    d._observe_speed(v1, [ran(0.05, 0.0)] * 20)
    v2 = replace(v1, version=2, sha256="1" * 64)
    assert d._fast(v2)  # never ran: its function's speed
    d._observe_speed(v2, [ran(0.06, 0.0)])
    assert d._fast(v2)  # one run of its own is not yet its speed (it made v2 'unknown', and its burst spill)
    d._observe_speed(v2, [ran(40.0, 0.0)] * 3)
    assert not d._fast(v2)  # it has run often enough: its own speed


def test_a_never_run_version_has_its_own_patience() -> None:
    from dataclasses import replace

    from serve_app.dispatch.dispatcher import UNTRIED_PATIENCE_S, FnQueue

    d, q, v1 = dispatcher(), FnQueue(), version()
    assert 0 < d._patience_left(q, v1) <= UNTRIED_PATIENCE_S
    q.untried_since[v1.key] -= UNTRIED_PATIENCE_S  # v1's patience ran out long ago
    assert d._patience_left(q, v1) == 0
    v2 = replace(v1, version=2, sha256="1" * 64)
    assert d._patience_left(q, v2) > 0  # a version of the same function that never ran starts its own


def test_a_new_versions_first_batches_stay_small_until_it_has_run_itself() -> None:
    from dataclasses import replace

    from serve_app.dispatch.dispatcher import TRIAL_BATCH

    d, v1 = dispatcher(), version()
    d._observe_speed(v1, [ran(0.05, 0.0)] * 20)
    assert d._batch_size(v1, 64) > TRIAL_BATCH  # a fast version that ran: full batches
    v2 = replace(v1, version=2, sha256="1" * 64)
    assert d._batch_size(v2, 64) == TRIAL_BATCH  # batched on its function's speed, but not far
    d._observe_speed(v2, [ran(0.05, 0.0)] * 3)
    assert d._batch_size(v2, 64) == d._batch_size(v1, 64)
