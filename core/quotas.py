"""Per-tenant quotas: what each one limits, the defaults from settings, and checking an operator's overrides."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from core.errors import InvalidInput
from core.models import INT32_MAX, INT64_MAX
from core.settings import Settings


@dataclass(frozen=True)
class Quotas:
    """One tenant's limits."""

    concurrency: int  # its executions running at once (the rest wait queued)
    queued_tasks: int  # its accepted invocations waiting to run, beyond which an invocation is refused
    functions: int  # its live functions
    bundle_bytes: int  # the bytes of the distinct bundles its live functions' versions use
    invocations_per_s: int  # the rate its token bucket refills at
    burst: int  # the bucket's size: invocations accepted at once above the rate

    def with_overrides(self, overrides: dict[str, int | None]) -> Quotas:
        """These limits with an operator's overrides applied (None: the default)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def shared_by(self, replicas: int) -> Quotas:
        """One API replica's part of these limits when `replicas` share a tenant's traffic: the quotas counted
        in memory (running, queued, the token bucket) split evenly, rounded down, never below their least."""
        if replicas <= 1:
            return self
        return replace(self, **{k: max(QUOTA_MIN[k], getattr(self, k) // replicas) for k in SPLIT_QUOTAS})

    def as_dict(self) -> dict[str, int]:
        """Each quota by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


QUOTA_NAMES = tuple(f.name for f in fields(Quotas))
# the least value of each quota (a tenant that may run nothing would queue forever), and the most
QUOTA_MIN = {"concurrency": 1, "queued_tasks": 0, "functions": 0, "bundle_bytes": 0, "invocations_per_s": 1,
             "burst": 1}
QUOTA_MAX = {name: (INT64_MAX if name == "bundle_bytes" else INT32_MAX) for name in QUOTA_NAMES}
SPLIT_QUOTAS = ("concurrency", "queued_tasks", "invocations_per_s", "burst")  # the others are counted in the database
SETTING_OF = {name: f"CLOUDFN_QUOTA_{name.upper()}" for name in QUOTA_NAMES}


def default_quotas(settings: Settings) -> Quotas:
    """Every tenant's limits unless the operator set its own (CLOUDFN_QUOTA_*)."""
    return Quotas(**{name: getattr(settings, f"quota_{name}") for name in QUOTA_NAMES})


def parse_overrides(body: Any) -> dict[str, int | None]:
    """Validate `PUT /v1/tenants/{name}/quotas`: quota name -> whole number, or null for the default."""
    example = '{"concurrency": 4, "invocations_per_s": 50, "burst": 100}'
    if not isinstance(body, dict) or not body:
        raise InvalidInput(f"send a JSON object of quotas to set, e.g. {example} (null resets one to its "
                           f"default); quotas: {', '.join(QUOTA_NAMES)}")
    unknown = sorted(set(body) - set(QUOTA_NAMES))
    if unknown:
        raise InvalidInput(f"unknown quotas: {', '.join(map(str, unknown))} (known: {', '.join(QUOTA_NAMES)})")
    out: dict[str, int | None] = {}
    for name, value in body.items():
        if value is None:
            out[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{name} must be a whole number (or null for the default), not {value!r}")
        if not QUOTA_MIN[name] <= value <= QUOTA_MAX[name]:
            raise InvalidInput(f"{name} must be between {QUOTA_MIN[name]} and {QUOTA_MAX[name]}, not {value}")
        out[name] = value
    return out
