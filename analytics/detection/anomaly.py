"""The record every detector emits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("outlier", "timeseries", "drift", "regression")


@dataclass
class Anomaly:
    """One detected anomaly: what stood out, by how much, and which detector said so."""

    kind: str  # one of KINDS
    metric: str  # the metric that stood out most, e.g. "duration_ms"
    observed: float
    expected_low: float
    expected_high: float
    score: float  # in [0, 1]
    detector: str  # name/version, e.g. "robust-mahalanobis-outlier/1"
    task_id: str | None = None
    version: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for storage and the API)."""
        return asdict(self)
