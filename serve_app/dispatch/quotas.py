"""Per-tenant quota enforcement in the replica's memory: running and queued counts, the invocation token bucket,
refusals counted by quota, and their Prometheus figures. No database round trip per invocation: the operator's
overrides are applied when set here and reloaded every QUOTA_REFRESH_S (for changes made through another replica).
With several API replicas each enforces an even part of a tenant's concurrency, queue and rate (Quotas.shared_by):
the load balancer spreads requests evenly, so together they hold the limit, at the cost of refusing a little early
when one replica gets more than its share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from core.errors import QuotaExceeded
from core.quotas import QUOTA_NAMES, Quotas

QUOTA_REFRESH_S = 5.0


@dataclass
class TenantLoad:
    """One tenant's limits and what it uses of them now."""

    limits: Quotas
    tokens: float
    refilled_at: float
    running: int = 0  # invocations handed to executors (a batch counts each of its invocations)
    queued: int = 0  # accepted (or being accepted) and waiting to run
    functions: int = 0  # as of the last refresh
    bundle_bytes: int = 0  # as of the last refresh
    rejected: dict[str, int] = field(default_factory=dict)  # quota -> refusals since start

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last refill (up to the burst)."""
        lim = self.limits
        self.tokens = min(float(lim.burst), self.tokens + (now - self.refilled_at) * lim.invocations_per_s)
        self.refilled_at = now


class QuotaGate:
    """Every tenant's load, admitting or refusing its invocations."""

    def __init__(self, defaults: Quotas) -> None:
        self.defaults = defaults
        self.replicas = 1  # API replicas sharing the tenants' traffic: each enforces its part of the limits
        self._loads: dict[str, TenantLoad] = {}
        self._overrides: dict[str, dict[str, int | None]] = {}

    def _limits(self, tenant: str) -> Quotas:
        return self.defaults.with_overrides(self._overrides.get(tenant, {})).shared_by(self.replicas)

    def set_replicas(self, replicas: int) -> None:
        """The number of live API replicas changed: each tenant's part of its limits here follows."""
        if replicas == self.replicas:
            return
        self.replicas = replicas
        for tenant, load in self._loads.items():
            load.limits = self._limits(tenant)
            load.tokens = min(load.tokens, float(load.limits.burst))

    def load(self, tenant: str) -> TenantLoad:
        """A tenant's load (created with its limits on first use)."""
        got = self._loads.get(tenant)
        if got is None:
            limits = self._limits(tenant)
            got = self._loads[tenant] = TenantLoad(limits, float(limits.burst), time.monotonic())
        return got

    def limits(self, tenant: str) -> Quotas:
        """A tenant's limits now."""
        return self.load(tenant).limits

    def admit(self, tenant: str) -> TenantLoad:
        """Take a queued place and a token for one invocation, or refuse it (QuotaExceeded: nothing taken)."""
        load = self.load(tenant)
        lim = load.limits
        if load.running + load.queued >= lim.concurrency + lim.queued_tasks:
            self._refuse(load, tenant, "queued_tasks", lim.queued_tasks, load.queued, 1,
                         f"tenant {tenant!r} has {load.queued} invocations queued and {load.running} running, its "
                         f"quota (queued_tasks = {lim.queued_tasks} beyond concurrency = {lim.concurrency})")
        now = time.monotonic()
        load.refill(now)
        if load.tokens < 1.0:
            wait_s = max(1, math.ceil((1.0 - load.tokens) / lim.invocations_per_s))
            self._refuse(load, tenant, "invocations_per_s", lim.invocations_per_s, lim.burst - math.floor(load.tokens),
                         wait_s, f"tenant {tenant!r} used its burst of {lim.burst} invocations, refilled at its "
                         f"quota (invocations_per_s = {lim.invocations_per_s})")
        load.tokens -= 1.0
        load.queued += 1
        return load

    def unadmit(self, tenant: str) -> None:
        """Give back what `admit` took (the invocation was not accepted after all)."""
        load = self.load(tenant)
        load.queued = max(0, load.queued - 1)
        load.tokens = min(float(load.limits.burst), load.tokens + 1.0)

    def refused(self, tenant: str, quota: str) -> None:
        """Count one refusal because of a quota (on /metrics)."""
        rejected = self.load(tenant).rejected
        rejected[quota] = rejected.get(quota, 0) + 1

    def _refuse(self, load: TenantLoad, tenant: str, quota: str, limit: int, used: int, retry_after_s: int,
                why: str) -> None:
        self.refused(tenant, quota)
        raise QuotaExceeded(f"{why}: nothing was queued; retry after {retry_after_s} s", tenant=tenant, quota=quota,
                            limit=limit, used=used, retry_after_s=retry_after_s)

    def set_overrides(self, tenant: str, overrides: dict[str, int | None]) -> None:
        """Apply a tenant's overrides now (its counts and tokens are kept; tokens capped at a smaller burst)."""
        self._overrides[tenant] = dict(overrides)
        load = self.load(tenant)
        load.refill(time.monotonic())
        load.limits = self._limits(tenant)
        load.tokens = min(load.tokens, float(load.limits.burst))

    def replace_overrides(self, every: dict[str, dict[str, int | None]]) -> None:
        """Apply every tenant's overrides as stored (a tenant missing from `every` goes back to the defaults)."""
        for tenant in set(self._overrides) - set(every):
            self.set_overrides(tenant, {})
        for tenant, overrides in every.items():
            if self._overrides.get(tenant) != overrides:
                self.set_overrides(tenant, overrides)

    def set_storage(self, usage: dict[str, tuple[int, int]]) -> None:
        """Each tenant's (functions, bundle bytes) as last counted in the database."""
        for tenant, (functions, bundle_bytes) in usage.items():
            load = self.load(tenant)
            load.functions, load.bundle_bytes = functions, bundle_bytes
        for tenant, load in self._loads.items():
            if tenant not in usage:
                load.functions = load.bundle_bytes = 0

    def usage(self, tenant: str) -> dict[str, int]:
        """What a tenant uses of each quota now (tokens spent of its burst for the rate)."""
        load = self.load(tenant)
        load.refill(time.monotonic())
        return {"concurrency": load.running, "queued_tasks": load.queued, "functions": load.functions,
                "bundle_bytes": load.bundle_bytes, "invocations_per_s": load.limits.burst - math.floor(load.tokens),
                "burst": load.limits.burst - math.floor(load.tokens)}

    def tenants(self) -> list[str]:
        """The tenants this replica knows a load or overrides of."""
        return sorted(set(self._loads) | set(self._overrides))


class QuotaCollector:
    """Prometheus figures of every tenant's quotas: limits, current use, refusals (labelled by tenant)."""

    def __init__(self, gate: QuotaGate) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        """The quota families, read at scrape time."""
        limit = GaugeMetricFamily("cloudfn_quota_limit", "A tenant's quota.", labels=["tenant", "quota"])
        used = GaugeMetricFamily("cloudfn_quota_used", "What a tenant uses of a quota now (functions and "
                                 f"bundle_bytes as of the last count, at most {QUOTA_REFRESH_S:g} s old; the rate "
                                 "quotas: tokens spent of the burst).", labels=["tenant", "quota"])
        refused = CounterMetricFamily("cloudfn_quota_rejections", "Requests refused (429) because of a quota.",
                                      labels=["tenant", "quota"])
        for tenant in self.gate.tenants():
            limits = self.gate.limits(tenant).as_dict()
            now = self.gate.usage(tenant)
            rejected = self.gate.load(tenant).rejected
            for quota in QUOTA_NAMES:
                limit.add_metric([tenant, quota], limits[quota])
                used.add_metric([tenant, quota], now[quota])
                refused.add_metric([tenant, quota], rejected.get(quota, 0))
        yield from (limit, used, refused)
