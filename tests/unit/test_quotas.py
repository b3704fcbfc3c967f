"""The quota gate's bookkeeping and the parsing of an operator's overrides (no platform needed)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from core.errors import InvalidInput, QuotaExceeded
from core.quotas import QUOTA_NAMES, Quotas, default_quotas, parse_overrides
from core.settings import Settings
from serve_app.dispatch.quotas import QuotaCollector, QuotaGate

ROOMY = Quotas(concurrency=2, queued_tasks=100, functions=10, bundle_bytes=10**6, invocations_per_s=1, burst=3)


def test_defaults_come_from_settings_and_overrides_replace_only_what_they_name() -> None:
    q = default_quotas(Settings(quota_concurrency=7, quota_burst=9))
    assert q.concurrency == 7 and q.burst == 9 and set(q.as_dict()) == set(QUOTA_NAMES)
    assert q.with_overrides({"concurrency": 2, "burst": None}).as_dict() == {**q.as_dict(), "concurrency": 2}


@pytest.mark.parametrize(("body", "message"), [
    ({"concurrency": 0}, "concurrency must be between 1"), ({"queued_tasks": -1}, "between 0"),
    ({"burst": 2.5}, "whole number"), ({"functions": "1"}, "whole number"), ({"burst": False}, "whole number"),
    ({"bundle_bytes": 2**63}, "between 0 and"), ({"cpu": 1}, "unknown quotas: cpu"), ({}, "send a JSON object"),
    ("concurrency=1", "send a JSON object"),
])
def test_bad_overrides_are_refused_naming_the_problem(body: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_overrides(body)


def test_good_overrides_are_kept_and_null_means_the_default() -> None:
    assert parse_overrides({"concurrency": 1, "bundle_bytes": 2**40, "burst": None}) == {
        "concurrency": 1, "bundle_bytes": 2**40, "burst": None}


def test_the_bucket_refuses_past_its_burst_and_a_refusal_takes_nothing() -> None:
    gate = QuotaGate(ROOMY)
    for _ in range(3):
        gate.admit("t")
    with pytest.raises(QuotaExceeded) as caught:
        gate.admit("t")
    assert caught.value.detail == {"tenant": "t", "quota": "invocations_per_s", "limit": 1, "used": 3,
                                   "retry_after_s": 1}
    assert gate.load("t").queued == 3 and gate.load("t").rejected == {"invocations_per_s": 1}
    gate.unadmit("t")  # one was not accepted after all: its token and place come back
    gate.admit("t")
    assert gate.load("other").tokens == 3, "each tenant has its own bucket"


def test_the_queue_refuses_beyond_concurrency_plus_queued_tasks() -> None:
    gate = QuotaGate(Quotas(concurrency=1, queued_tasks=1, functions=1, bundle_bytes=1, invocations_per_s=1000,
                            burst=1000))
    gate.admit("t")
    gate.admit("t")
    with pytest.raises(QuotaExceeded) as caught:
        gate.admit("t")
    assert caught.value.detail["quota"] == "queued_tasks" and caught.value.detail["used"] == 2


def test_new_overrides_apply_at_once_and_the_figures_carry_the_tenant() -> None:
    gate = QuotaGate(ROOMY)
    gate.admit("t")
    gate.set_overrides("t", {"burst": 1, "concurrency": 5})
    assert gate.limits("t").concurrency == 5 and gate.load("t").tokens <= 1
    gate.replace_overrides({})  # removed in the database: back to the defaults
    assert gate.limits("t") == ROOMY
    registry = CollectorRegistry()
    registry.register(QuotaCollector(gate))
    text = generate_latest(registry).decode()
    assert 'cloudfn_quota_limit{quota="concurrency",tenant="t"} 2.0' in text
    assert 'cloudfn_quota_used{quota="queued_tasks",tenant="t"} 1.0' in text
    assert 'cloudfn_quota_rejections_total{quota="burst",tenant="t"} 0.0' in text


def test_replicas_each_enforce_an_even_part_that_together_holds_the_limit() -> None:
    limits = Quotas(concurrency=9, queued_tasks=100, functions=5, bundle_bytes=10**6, invocations_per_s=10, burst=7)
    part = limits.shared_by(2)
    assert (part.concurrency, part.queued_tasks, part.invocations_per_s, part.burst) == (4, 50, 5, 3)
    assert (part.functions, part.bundle_bytes) == (5, 10**6), "counted in the database, not split"
    assert limits.shared_by(20).concurrency == 1 and limits.shared_by(20).queued_tasks == 5
    gates = [QuotaGate(limits) for _ in range(2)]
    for g in gates:
        g.set_replicas(2)
    admitted = 0
    for g in gates:  # a burst spread over both replicas: together they accept the burst, not twice it
        while True:
            try:
                g.admit("t")
            except QuotaExceeded:
                break
            admitted += 1
    assert admitted == 2 * 3 <= limits.burst
    gates[0].set_replicas(1)  # the other replica is gone: this one's part grows back to the whole
    assert gates[0].load("t").limits == limits
