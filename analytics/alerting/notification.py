"""One notice to send: a rule's firing or resolved event, independent of the channel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from analytics.alerting.payloads import (
    Instant,
    Status,
    alertmanager_payload,
    plain_text,
    slack_message,
    summary,
)


class Notice(Protocol):
    """What a transport needs from a notice: its stable id and its rendering per channel."""

    @property
    def id(self) -> str:
        """The idempotency key: `webhook-id`, the e-mail's Message-ID, the Slack metadata key."""
        ...

    def alertmanager(self) -> dict[str, Any]:
        """The Alertmanager v4 webhook body."""
        ...

    def slack(self) -> dict[str, Any]:
        """The Slack message."""
        ...

    def subject(self) -> str:
        """One line (e-mail subject, SMS text)."""
        ...

    def text(self) -> str:
        """The plain-text body."""
        ...


@dataclass
class Notification:
    """A firing or resolved notice; `id` is its idempotency key (the `webhook-id`, stable across retries)."""

    id: str
    rule_name: str
    function: str
    status: Status
    value: float | None
    started_at: Instant
    ended_at: Instant = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    generator_url: str = ""
    receiver: str = "cloudfn"

    def _payload_fields(self) -> dict[str, Any]:
        """The fields every payload builder takes."""
        return {"rule_name": self.rule_name, "function": self.function, "status": self.status, "value": self.value,
                "started_at": self.started_at, "ended_at": self.ended_at, "labels": self.labels,
                "annotations": self.annotations, "external_url": self.external_url,
                "generator_url": self.generator_url, "receiver": self.receiver}

    def alertmanager(self) -> dict[str, Any]:
        """The Alertmanager v4 webhook body."""
        return alertmanager_payload(**self._payload_fields())

    def slack(self) -> dict[str, Any]:
        """The Slack Block Kit message."""
        return slack_message(**self._payload_fields())

    def subject(self) -> str:
        """A one-line summary (e-mail subject, SMS text)."""
        return summary(self.rule_name, self.function, self.status, self.value)

    def text(self) -> str:
        """The plain-text body."""
        return plain_text(
            rule_name=self.rule_name,
            function=self.function,
            status=self.status,
            value=self.value,
            started_at=self.started_at,
            ended_at=self.ended_at,
            annotations=self.annotations,
            generator_url=self.generator_url,
        )
