"""Per-function Prometheus metrics fed one execution at a time, exposed in the text format.

Every per-function series carries a `tenant` label (the function's namespace): two tenants' functions of the
same name never share a series, and `render(tenant=...)` shows one tenant only its own series.

Each PromRegistry owns its own CollectorRegistry (never prometheus_client's global one), so two platform
instances, or two tests, in one process do not share counters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

from core.models import MetricRecord, TaskStatus

# 5 ms .. 60 s: a serverless handler's range, up to the default timeout.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_STATUSES = tuple(s.value for s in TaskStatus)


class PromRegistry:
    """Counters, a duration histogram and a memory gauge per function."""

    # Every name here is a legacy (non-UTF-8) name, so the body is the classic 0.0.4 text format; saying so
    # (prometheus_client's own default without an Accept header) suits Prometheus 2.x scrapers too.
    content_type: str = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.writer_flushes = Counter(
            "cloudfn_writer_flushes",
            "Group commits of task state (one transaction each).",
            registry=self.registry,
        )
        self.writer_rows = Counter(
            "cloudfn_writer_rows",
            "Task inserts, running marks and results written; divided by cloudfn_writer_flushes, the mean batch.",
            registry=self.registry,
        )
        self.ray_tasks = Counter(
            "cloudfn_dispatch_ray_tasks",
            "Ray tasks sent to run invocations (one task may run a batch of a short function's invocations).",
            ["tenant", "function"],
            registry=self.registry,
        )
        self.dispatched = Counter(
            "cloudfn_dispatch_invocations",
            "Invocation attempts handed to Ray tasks; divided by cloudfn_dispatch_ray_tasks, the mean batch size.",
            ["tenant", "function"],
            registry=self.registry,
        )
        self.invocations = Counter(
            "cloudfn_invocations",
            "Finished executions by function and final status.",
            ["tenant", "function", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "cloudfn_duration_seconds",
            "Execution duration (handler wall time) in seconds.",
            ["tenant", "function"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.cpu = Counter(
            "cloudfn_cpu_seconds",
            "CPU time (user + system) used by executions, in seconds.",
            ["tenant", "function"],
            registry=self.registry,
        )
        self.peak_memory = Gauge(
            "cloudfn_peak_memory_bytes",
            "Peak memory of the function's most recent execution, in bytes.",
            ["tenant", "function"],
            registry=self.registry,
        )
        self.cold_starts = Counter(
            "cloudfn_cold_starts",
            "Executions that started a new execution environment.",
            ["tenant", "function"],
            registry=self.registry,
        )

        self.rows_set_aside = Counter(
            "cloudfn_rows_set_aside",
            "Metric rows refused by a shared sink (non-finite or absurd values) and logged instead of written.",
            ["sink"],
            registry=self.registry,
        )

    def observe_flush(self, rows: int) -> None:
        """Count one group commit of `rows` task rows, running marks and results."""
        self.writer_flushes.inc()
        self.writer_rows.inc(rows)

    def observe_dispatch(self, tenant: str, function: str, invocations: int) -> None:
        """Count one Ray task sent for `invocations` queued invocations of a function (a batch when > 1)."""
        self.ray_tasks.labels(tenant=tenant, function=function).inc()
        self.dispatched.labels(tenant=tenant, function=function).inc(invocations)

    def observe(self, rec: MetricRecord) -> None:
        """Count one finished execution."""
        ns, fn = rec.namespace, rec.function
        self.invocations.labels(tenant=ns, function=fn, status=str(rec.status)).inc()
        self.duration.labels(tenant=ns, function=fn).observe(max(rec.duration_ms, 0.0) / 1000.0)
        self.cpu.labels(tenant=ns, function=fn).inc(max(rec.cpu_ms, 0.0) / 1000.0)
        self.peak_memory.labels(tenant=ns, function=fn).set(rec.peak_memory_mb * 1024 * 1024)
        cold = self.cold_starts.labels(tenant=ns, function=fn)  # created at 0 so rate() sees the first cold start
        if rec.cold_start:
            cold.inc()

    def forget(self, tenant: str, function: str) -> None:
        """Drop a function's series (after it is deleted)."""
        for status in _STATUSES:
            with contextlib.suppress(KeyError):
                self.invocations.remove(tenant, function, status)
        for metric in (self.duration, self.cpu, self.peak_memory, self.cold_starts, self.ray_tasks, self.dispatched):
            with contextlib.suppress(KeyError):
                metric.remove(tenant, function)

    def render(self, tenant: str | None = None) -> bytes:
        """The registry in Prometheus text exposition format: everything, or only one tenant's series (the
        platform-wide ones, which carry no tenant, left out)."""
        return generate_latest(self.registry if tenant is None else _TenantView(self.registry, tenant))


class _TenantView:
    """A read-only view of a registry holding only the samples labelled with one tenant."""

    def __init__(self, registry: CollectorRegistry, tenant: str) -> None:
        self.registry = registry
        self.tenant = tenant

    def collect(self) -> Iterator[Metric]:
        """The registry's families, each with only this tenant's samples (empty families left out)."""
        for family in self.registry.collect():
            kept = [s for s in family.samples if s.labels.get("tenant") == self.tenant]
            if kept:
                view = Metric(family.name, family.documentation, family.type, family.unit)
                view.samples = kept
                yield view
