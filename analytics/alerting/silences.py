"""Silences in Alertmanager API v2's shape: parsing a posted silence, its state, and whether it mutes an alert."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from analytics.alerting.matchers import Matcher
from core.errors import InvalidInput

SilenceState = Literal["pending", "active", "expired"]


class PostedMatcher(BaseModel):
    """`{"name", "value", "isRegex", "isEqual"}` (isEqual defaults to true, as in Alertmanager)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(max_length=1000)
    isRegex: bool  # noqa: N815 - the API's field name
    isEqual: bool = True  # noqa: N815

    def matcher(self) -> Matcher:
        """As a Matcher (ValueError for a bad name or regex)."""
        return Matcher(self.name, self.value, is_regex=self.isRegex, is_equal=self.isEqual)


class PostedSilence(BaseModel):
    """A silence as `POST /v1/silences` takes it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    matchers: list[PostedMatcher] = Field(min_length=1, max_length=50)
    startsAt: AwareDatetime  # noqa: N815
    endsAt: AwareDatetime  # noqa: N815
    createdBy: str = Field(min_length=1, max_length=200)  # noqa: N815
    comment: str = Field(min_length=1, max_length=2000)

    @field_validator("matchers")
    @classmethod
    def _valid(cls, v: list[PostedMatcher]) -> list[PostedMatcher]:
        for m in v:
            m.matcher()
        if all(m.matcher().matches({}) for m in v):
            raise ValueError("the matchers match every alert (even one without labels); name at least one label "
                             "that must be present")
        return v

    @model_validator(mode="after")
    def _window(self) -> PostedSilence:
        if self.endsAt <= self.startsAt:
            raise ValueError("endsAt must be after startsAt")
        if self.endsAt <= datetime.now(UTC):
            raise ValueError("endsAt is in the past: the silence would never be active")
        return self


def parse_silence(data: object) -> PostedSilence:
    """Validate a posted silence; InvalidInput naming the field otherwise."""
    if not isinstance(data, dict):
        raise InvalidInput(f"a silence must be a JSON object, got {type(data).__name__}")
    try:
        return PostedSilence.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = "unknown field" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"invalid silence: {loc + ': ' if loc else ''}{msg}") from None


@dataclass(frozen=True)
class Silence:
    """A stored silence of one tenant."""

    id: str
    tenant: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float

    def state(self, now: float) -> SilenceState:
        """pending before startsAt, active until endsAt, then expired."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        """Whether this silence mutes an alert: active, same tenant, every matcher matches."""
        return (self.state(now) == "active" and labels.get("tenant") == self.tenant
                and all(m.matches(labels) for m in self.matchers))


def silenced_by(labels: Mapping[str, str], silences: Sequence[Silence], now: float) -> list[str]:
    """The ids of the silences muting an alert."""
    return [s.id for s in silences if s.mutes(labels, now)]


def matchers_from_json(raw: Sequence[Mapping[str, object]]) -> tuple[Matcher, ...]:
    """Stored matchers (the API's JSON shape) as Matchers."""
    return tuple(Matcher(str(m["name"]), str(m["value"]), bool(m.get("isRegex")), bool(m.get("isEqual", True)))
                 for m in raw)
