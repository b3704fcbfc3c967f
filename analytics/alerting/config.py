"""`configs/alerting.yaml` as typed models: channel settings, receivers, the routing tree, inhibition, timings.

`load_alerting_config` turns a bad file into AlertingConfigError naming the field; `route` walks the tree as
Alertmanager does (first matching child wins unless it has `continue: true`; no matching child = the node).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from analytics.alerting.channel_config import ChannelSettings
from analytics.alerting.durations import parse_duration
from analytics.alerting.matchers import LABEL_NAME_RE, Matcher, parse_matchers
from analytics.alerting.rules import Channel

# Defaults for a FaaS team: the detectors already debounce, so a group's first notice goes out at once.
GROUP_WAIT_S = 0.5
GROUP_INTERVAL_S = 10.0
REPEAT_INTERVAL_S = 4 * 3600.0
FLAP_WINDOW_S = 10.0
DEFAULT_GROUP_BY = ("alertname",)
CHANNEL_KEYS = ("smtp_url", "smtp_from", "sms_provider", "sms_url", "sms_sid", "sms_token", "sms_from")

Seconds = Annotated[float, BeforeValidator(parse_duration)]


class AlertingConfigError(ValueError):
    """The alerting file is unreadable or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def _matchers(v: object) -> list[Matcher]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError('must be a list of matchers like ["severity=\\"critical\\"", "function=~\\"pay.*\\""]')
    return parse_matchers(v)


Matchers = Annotated[list[Matcher], BeforeValidator(_matchers)]


def _label_names(v: list[str]) -> list[str]:
    for name in v:
        if name != "..." and not LABEL_NAME_RE.fullmatch(name):
            raise ValueError(f"label name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
    return v


class ChannelDefaults(_Strict):
    """The `channels:` section: the same settings as the CLOUDFN_SMTP_* / CLOUDFN_SMS_* variables (which win)."""

    smtp_url: str | None = None
    smtp_from: str | None = None
    sms_provider: str | None = None
    sms_url: str | None = None
    sms_sid: str | None = None
    sms_token: str | None = Field(default=None, repr=False)
    sms_from: str | None = None


class Receiver(_Strict):
    """A named list of channels (the same channel shapes a rule takes)."""

    name: str = Field(min_length=1, max_length=100)
    channels: list[Channel] = Field(default_factory=list, max_length=20)


class Route(_Strict):
    """A routing-tree node; unset fields inherit from the parent."""

    receiver: str | None = None
    matchers: Matchers = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Seconds | None = None
    group_interval: Seconds | None = None
    repeat_interval: Seconds | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _label_names(v)


class InhibitRule(_Strict):
    """While an alert matching `source_matchers` fires, alerts matching `target_matchers` with equal `equal`
    labels are muted (never the source itself)."""

    source_matchers: Matchers = Field(min_length=1)
    target_matchers: Matchers = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)

    @field_validator("equal")
    @classmethod
    def _equal(cls, v: list[str]) -> list[str]:
        return _label_names(v)


class AlertingConfig(_Strict):
    """The whole file."""

    channels: ChannelDefaults = Field(default_factory=ChannelDefaults)
    route: Route = Field(default_factory=Route)
    receivers: list[Receiver] = Field(default_factory=list)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    flap_window: Seconds = FLAP_WINDOW_S

    @model_validator(mode="after")
    def _receivers_exist(self) -> AlertingConfig:
        names = [r.name for r in self.receivers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"receivers: duplicate name(s) {', '.join(dupes)}")
        if self.route.receiver is None and self.receivers:
            raise ValueError("route.receiver: the root route needs a default receiver (one of "
                             f"{', '.join(names)})")
        for path, node in _walk(self.route, "route"):
            if node.receiver is not None and node.receiver not in names:
                known = ", ".join(names) or "none defined"
                raise ValueError(f"{path}.receiver: no receiver named {node.receiver!r} (receivers: {known})")
        return self

    def receiver(self, name: str) -> Receiver:
        """The receiver of that name (the routing tree only names existing ones)."""
        return next(r for r in self.receivers if r.name == name)

    def channel_types(self) -> set[str]:
        """Every channel type the receivers use (each must be configured on the platform)."""
        return {c.type for r in self.receivers for c in r.channels}


def _walk(node: Route, path: str) -> list[tuple[str, Route]]:
    out = [(path, node)]
    for i, child in enumerate(node.routes):
        out += _walk(child, f"{path}.routes[{i}]")
    return out


@dataclass(frozen=True)
class RouteMatch:
    """Where an alert goes and how it is grouped: the effective (inherited) settings of a matched node."""

    route_id: str
    receiver: str | None
    group_by: tuple[str, ...]
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that key the group (`...` = every label); the tenant always splits groups."""
        if "..." in self.group_by:
            return dict(labels)
        keys = [*self.group_by, "tenant"]
        return {k: labels.get(k, "") for k in dict.fromkeys(keys)}


def _effective(node: Route, parent: RouteMatch, route_id: str) -> RouteMatch:
    return RouteMatch(
        route_id=route_id,
        receiver=node.receiver if node.receiver is not None else parent.receiver,
        group_by=tuple(node.group_by) if node.group_by is not None else parent.group_by,
        group_wait_s=node.group_wait if node.group_wait is not None else parent.group_wait_s,
        group_interval_s=node.group_interval if node.group_interval is not None else parent.group_interval_s,
        repeat_interval_s=node.repeat_interval if node.repeat_interval is not None else parent.repeat_interval_s,
    )


_BASE = RouteMatch("", None, DEFAULT_GROUP_BY, GROUP_WAIT_S, GROUP_INTERVAL_S, REPEAT_INTERVAL_S)


def route(root: Route, labels: Mapping[str, str]) -> list[RouteMatch]:
    """The nodes an alert with these labels goes to (at least the root), in tree order."""
    return _route(root, labels, _effective(root, _BASE, "route"))


def _route(node: Route, labels: Mapping[str, str], here: RouteMatch) -> list[RouteMatch]:
    out: list[RouteMatch] = []
    for i, child in enumerate(node.routes):
        if not all(m.matches(labels) for m in child.matchers):
            continue
        out += _route(child, labels, _effective(child, here, f"{here.route_id}.{i}"))
        if not child.continue_:
            break
    return out or [here]


def _message(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-union")))
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{loc}: {msg}" if loc else msg


def parse_alerting_config(data: object, source: str = "alerting config") -> AlertingConfig:
    """Validate parsed YAML/JSON; AlertingConfigError names the source and the first bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AlertingConfigError(f"{source}: must be a mapping with route, receivers, inhibit_rules, channels")
    try:
        return AlertingConfig.model_validate(data)
    except ValidationError as exc:
        raise AlertingConfigError(f"{source}: {_message(exc)}") from None


def load_alerting_config(path: Path) -> AlertingConfig:
    """Read `path` (a missing file = defaults: no receivers, fast grouping); AlertingConfigError if invalid."""
    if not path.exists():
        return AlertingConfig()
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise AlertingConfigError(f"{path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        raise AlertingConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_alerting_config(data, str(path))


def channel_overrides(config: AlertingConfig, set_by_env: set[str]) -> dict[str, str]:
    """The file's channel settings for the fields the environment did not set (the variables win)."""
    values = config.channels.model_dump(exclude_none=True)
    return {k: v for k, v in values.items() if k in CHANNEL_KEYS and k not in set_by_env}


def checked_alerting_config(path: Path, channels: ChannelSettings) -> AlertingConfig:
    """The alerting file, checked also against the platform: every channel type its receivers use must be
    configured (AlertingConfigError otherwise: the platform does not start)."""
    config = load_alerting_config(path)
    if (why := channels.refusal(sorted(config.channel_types()))) is not None:
        raise AlertingConfigError(f"{path}: receivers cannot deliver: {why}")
    return config
