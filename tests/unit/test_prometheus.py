"""The Prometheus exposition: parsed back sample by sample, and checked by promtool when present."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from analytics.prometheus import DURATION_BUCKETS, PromRegistry
from core.models import MetricRecord


def rec(function: str, status: str, duration_ms: float, *, cold: bool = False, mem: float = 64.0) -> MetricRecord:
    """A metric record with the figures the registry reads."""
    return MetricRecord(
        task_id="t",
        namespace="default",
        function=function,
        version=1,
        status=status,
        started_at=0.0,
        finished_at=1.0,
        duration_ms=duration_ms,
        cpu_ms=duration_ms / 2,
        peak_memory_mb=mem,
        queue_ms=0.0,
        cold_start=cold,
    )


def samples(reg: PromRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered text, keyed by name and labels (the `_created` series left out)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(reg.render().decode()):
        for s in family.samples:
            if not s.name.endswith("_created"):
                out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def key(name: str, **labels: Any) -> tuple[str, frozenset[tuple[str, str]]]:
    if "function" in labels:
        labels.setdefault("tenant", "default")
    return name, frozenset((k, str(v)) for k, v in labels.items())


@pytest.fixture
def reg() -> PromRegistry:
    r = PromRegistry()
    for rec_ in [
        rec("hello", "succeeded", 3.0, cold=True, mem=50.0),
        rec("hello", "succeeded", 40.0),
        rec("hello", "failed", 700.0, mem=80.0),
        rec("slow", "timed_out", 61_000.0, cold=True),
    ]:
        r.observe(rec_)
    return r


def test_samples(reg: PromRegistry) -> None:
    s = samples(reg)
    assert s[key("cloudfn_invocations_total", function="hello", status="succeeded")] == 2
    assert s[key("cloudfn_invocations_total", function="hello", status="failed")] == 1
    assert s[key("cloudfn_invocations_total", function="slow", status="timed_out")] == 1
    assert key("cloudfn_invocations_total", function="slow", status="succeeded") not in s

    assert s[key("cloudfn_duration_seconds_count", function="hello")] == 3
    assert s[key("cloudfn_duration_seconds_sum", function="hello")] == pytest.approx(0.743)
    buckets = {
        le: s[key("cloudfn_duration_seconds_bucket", function="hello", le=le)]
        for le in ("0.005", "0.05", "0.5", "1.0", "+Inf")
    }
    assert buckets == {"0.005": 1, "0.05": 2, "0.5": 2, "1.0": 3, "+Inf": 3}
    assert s[key("cloudfn_duration_seconds_bucket", function="slow", le="60.0")] == 0
    assert s[key("cloudfn_duration_seconds_bucket", function="slow", le="+Inf")] == 1
    assert (
        len([k for k in s if k[0] == "cloudfn_duration_seconds_bucket" and ("function", "slow") in k[1]])
        == len(DURATION_BUCKETS) + 1
    )

    assert s[key("cloudfn_cpu_seconds_total", function="hello")] == pytest.approx(0.3715)
    assert s[key("cloudfn_peak_memory_bytes", function="hello")] == 80 * 1024 * 1024  # the last execution's
    assert s[key("cloudfn_cold_starts_total", function="hello")] == 1
    assert s[key("cloudfn_cold_starts_total", function="slow")] == 1


def test_registries_are_independent(reg: PromRegistry) -> None:
    other = PromRegistry()
    assert not [k for k, v in samples(other).items() if k[0].startswith("cloudfn_") and v]
    other.observe(rec("hello", "succeeded", 1.0))
    assert samples(other)[key("cloudfn_invocations_total", function="hello", status="succeeded")] == 1
    assert samples(reg)[key("cloudfn_invocations_total", function="hello", status="succeeded")] == 2


def test_forget(reg: PromRegistry) -> None:
    reg.observe_dispatch("default", "hello", 3)
    reg.forget("default", "hello")
    reg.forget("default", "never-seen")
    names = {dict(k[1]).get("function") for k in samples(reg)} - {None}  # None: the writer's counters
    assert names == {"slow"}


def test_render_for_one_tenant_shows_only_its_series(reg: PromRegistry) -> None:
    """Two tenants' functions of the same name keep separate series; a tenant's view holds only its own, and
    none of the platform-wide (tenant-less) ones."""
    reg.observe(MetricRecord(**{**rec("hello", "succeeded", 5.0).__dict__, "namespace": "team-b"}))
    reg.observe_dispatch("team-b", "hello", 1)
    reg.observe_flush(4)
    everything = samples(reg)
    assert everything[key("cloudfn_invocations_total", function="hello", status="succeeded")] == 2
    assert everything[key("cloudfn_invocations_total", function="hello", status="succeeded", tenant="team-b")] == 1
    b_view = {}
    for family in text_string_to_metric_families(reg.render("team-b").decode()):
        for s in family.samples:
            b_view[(s.name, frozenset(s.labels.items()))] = s.value
    assert b_view[key("cloudfn_invocations_total", function="hello", status="succeeded", tenant="team-b")] == 1
    assert b_view[key("cloudfn_dispatch_invocations_total", function="hello", tenant="team-b")] == 1
    assert {dict(k[1]).get("tenant") for k in b_view} == {"team-b"}
    assert not [k for k in b_view if k[0].startswith("cloudfn_writer")]
    assert reg.render("nobody") == b""


def test_content_type(reg: PromRegistry) -> None:
    assert reg.content_type.startswith("text/plain; version=0.0.4")
    assert reg.render().endswith(b"\n")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH (Debian package `prometheus`)")
def test_promtool_check_metrics(reg: PromRegistry) -> None:
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=reg.render(), capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout.decode() + proc.stderr.decode()
