"""Alerting without Ray or a database: rule models, state machines, labels, the alerting file and its routing
tree, grouping, silences, inhibition, flap damping, payloads, signing and delivery. Imports only `core`."""

from analytics.alerting.delivery import Attempt, Notifier
from analytics.alerting.evaluate import RuleState, Transition, step_anomaly, step_threshold
from analytics.alerting.notification import Notification
from analytics.alerting.payloads import alertmanager_payload, slack_message
from analytics.alerting.rules import (
    AlertRuleSpec,
    Channel,
    EmailChannel,
    SlackChannel,
    SmsChannel,
    WebhookChannel,
    parse_rule,
)
from analytics.alerting.signing import sign, verify

__all__ = [
    "AlertRuleSpec",
    "Attempt",
    "Channel",
    "EmailChannel",
    "Notification",
    "Notifier",
    "RuleState",
    "SlackChannel",
    "SmsChannel",
    "Transition",
    "WebhookChannel",
    "alertmanager_payload",
    "parse_rule",
    "sign",
    "slack_message",
    "step_anomaly",
    "step_threshold",
    "verify",
]
