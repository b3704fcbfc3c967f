"""AlertDispatcher: a Ray actor that evaluates alert rules about once a second and notifies receivers the
Alertmanager way: labels, the routing tree (or a rule's own channels), grouping, silences, inhibition, flap
damping, and an outbox from which a worker delivers at least once.

Threshold rules read the window's aggregate with DuckDB over the Parquet lake; anomaly rules read new
anomalies from PostgreSQL. A rule that fires opens an `alerts` row and puts the alert in its groups; a
group's notice is committed to `alert_notifications` (one row per channel) before anything is sent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import ray
from sqlalchemy import insert, select, update

from actors.outbox_worker import OutboxWorker
from analytics.aggregates import aggregate
from analytics.alerting import AlertRuleSpec, Notifier, RuleState, step_anomaly, step_threshold
from analytics.alerting.channel_config import ChannelSettings
from analytics.alerting.config import AlertingConfig, route
from analytics.alerting.evaluate import matches
from analytics.alerting.flapping import Episode, damp
from analytics.alerting.group_message import alertmanager_group_payload
from analytics.alerting.grouping import Aggregator, AlertInstance, GroupNotice
from analytics.alerting.inhibition import inhibited
from analytics.alerting.labels import alert_labels, direct_receiver
from analytics.alerting.payloads import fingerprint
from analytics.alerting.silences import Silence, matchers_from_json
from analytics.lakes import open_lake
from core.db.engine import make_engine
from core.db.outbox import active_silences, enqueue, last_notices
from core.db.tables import Alert, AlertRule, Function
from core.db.tables import Anomaly as AnomalyRow

log = logging.getLogger(__name__)
ANOMALY_QUIET_S = 300.0
SEED_LOOKBACK_S = 7 * 86400.0
FLUSH_EVERY_S = 0.1
SILENCES_TTL_S = 0.5


class AlertEngine:
    """Rule evaluation, grouping and the outbox's producer side, independent of Ray."""

    def __init__(self, database_url: str, lake_path: str, api_url: str, *, config: AlertingConfig | None = None,
                 anomaly_quiet_s: float = ANOMALY_QUIET_S, wake: threading.Event | None = None) -> None:
        self.engine = make_engine(database_url, pool_size=3)
        self.lake = open_lake(lake_path)
        self.api_url = api_url
        self.config = config or AlertingConfig()
        self.quiet_s = anomaly_quiet_s
        self.wake = wake or threading.Event()
        self.aggregator = Aggregator()
        self.direct: dict[str, list[dict[str, Any]]] = {}  # a rule's own channels, by receiver name
        self.evaluations = 0
        self.enqueued = 0
        self._seeded = False
        self._silence_cache: list[Silence] = []
        self._silences_read_at: float | None = None

    def tick(self, now: float | None = None) -> int:
        """Evaluate every rule, then flush due groups into the outbox; return the number of transitions."""
        now = time.time() if now is None else now
        changed = self.evaluate(now)
        self.flush(now)
        return changed

    def evaluate(self, now: float) -> int:
        """Evaluate every live rule once and feed the groups; return the number of opened or closed alerts."""
        with self.engine.connect() as conn:
            rules = conn.execute(select(AlertRule).where(AlertRule.deleted_at.is_(None))).all()
        changed = 0
        for rule in rules:
            try:
                changed += self._evaluate(rule, now)
            except Exception:
                log.exception("evaluating rule %s failed", rule.id)
        self.aggregator.resolve_unless({r.id for r in rules}, now)
        if not self._seeded:
            self._seed()
        self.evaluations += 1
        return changed

    def _seed(self) -> None:
        """After a (re)start: groups remember what their last stored notice said, so it is not sent twice."""
        self._seeded = True
        for key, payload, at in last_notices(self.engine, time.time() - SEED_LOOKBACK_S):
            notified = {a["fingerprint"]: a["status"] for a in payload.get("alerts", [])}
            self.aggregator.seed(key, notified, at)

    def _evaluate(self, rule: Any, now: float) -> int:
        spec = AlertRuleSpec.model_validate(rule.spec)
        raw = dict(rule.state or {})
        episode = Episode(raw.pop("alert_id", None), raw.pop("resolved_at_held", None))
        labels: dict[str, str] | None = raw.pop("labels", None)
        state = RuleState(**raw) if raw else RuleState.initial(now)
        latest: dict[str, Any] = {}
        if spec.kind == "threshold":
            assert spec.metric and spec.aggregate and spec.window_s
            value = aggregate(self.lake, spec.function, spec.metric, spec.aggregate, spec.window_s,
                              now=now, namespace=rule.namespace)
            new, transition = step_threshold(spec, state, value, now)
        else:
            anomalies = self._anomalies(rule.namespace, spec.function, now)
            latest = max((a for a in anomalies if matches(spec, a)), key=lambda a: a["detected_at"], default={})
            new, transition = step_anomaly(spec, state, anomalies, now, self.quiet_s)
        episode, action = damp(episode, transition, now, self.config.flap_window)
        if labels is None and episode.alert_id is not None:  # an episode opened before alerts had labels
            labels = alert_labels(spec, rule.namespace, version=None, metric=latest.get("metric"))
        with self.engine.begin() as conn:
            if action == "open":
                version = latest.get("version") if latest else conn.execute(select(Function.active_version).where(
                    Function.namespace == rule.namespace, Function.name == spec.function,
                    Function.deleted_at.is_(None))).scalar()
                labels = alert_labels(spec, rule.namespace, version=version, metric=latest.get("metric"))
                alert_id = conn.execute(insert(Alert).values(
                    rule_id=rule.id, namespace=rule.namespace, function=spec.function, state="firing",
                    value=new.value, started_at=datetime.fromtimestamp(now, UTC),
                    details={"episode_id": new.episode_id, "labels": labels}).returning(Alert.id)).scalar_one()
                episode = Episode(alert_id=alert_id)
            elif action == "close" and episode.alert_id is not None:
                conn.execute(update(Alert).where(Alert.id == episode.alert_id).values(
                    state="resolved", resolved_at=datetime.fromtimestamp(episode.resolved_at or now, UTC)))
            elif episode.alert_id is not None and new.state == "firing":
                conn.execute(update(Alert).where(Alert.id == episode.alert_id).values(value=new.value))
            open_ = action != "close" and episode.alert_id is not None
            conn.execute(update(AlertRule).where(AlertRule.id == rule.id).values(state={
                **asdict(new), "alert_id": episode.alert_id if open_ else None,
                "resolved_at_held": episode.resolved_at if open_ else None, "labels": labels if open_ else None}))
        if episode.alert_id is not None and labels is not None and (open_ or action == "close"):
            self._put(rule, spec, labels, new, episode, now, resolved=action == "close")
        return 1 if action in ("open", "close") else 0

    def _anomalies(self, namespace: str, function: str, now: float) -> list[dict[str, Any]]:
        since = datetime.fromtimestamp(now - self.quiet_s, UTC)
        with self.engine.connect() as conn:
            rows = conn.execute(select(AnomalyRow).where(
                AnomalyRow.namespace == namespace, AnomalyRow.function == function,
                AnomalyRow.detected_at > since, AnomalyRow.feedback.is_distinct_from("false_positive"))).all()
        return [{"function": r.function, "kind": r.kind, "score": r.score, "detected_at": r.detected_at,
                 "metric": r.metric, "observed": r.observed, "version": r.version} for r in rows]

    def _put(self, rule: Any, spec: AlertRuleSpec, labels: dict[str, str], state: RuleState, episode: Episode,
             now: float, *, resolved: bool) -> None:
        """Put the rule's alert into every group it belongs to (its own channels, or the routing tree's)."""
        alert = AlertInstance(
            fingerprint=fingerprint(labels), labels=labels, status="resolved" if resolved else "firing",
            starts_at=state.fired_at or now, ends_at=(episode.resolved_at or now) if resolved else None,
            value=state.value, annotations={**spec.annotations, "summary": _summary(spec, state)},
            generator_url=f"{self.api_url}/v1/alerts?rule_id={rule.id}", alert_id=episode.alert_id, rule_id=rule.id,
            repeat_interval_s=spec.repeat_interval_s)
        matches = route(self.config.route, labels)
        if spec.channels:
            channels = rule.spec["channels"]
            name = direct_receiver(rule.namespace, channels)
            self.direct[name] = channels
            self.aggregator.put(name, matches[0], alert, now)
            return
        for m in matches:
            if m.receiver is not None and self.config.receiver(m.receiver).channels:
                self.aggregator.put(m.receiver, m, alert, now)

    def _channels(self, receiver: str) -> list[dict[str, Any]]:
        if receiver in self.direct:
            return self.direct[receiver]
        if any(r.name == receiver for r in self.config.receivers):
            return [c.model_dump(mode="json") for c in self.config.receiver(receiver).channels]
        return []

    def flush(self, now: float | None = None) -> int:
        """Commit the notices of every due group to the outbox and wake the worker; return how many rows."""
        now = time.time() if now is None else now
        if not self.aggregator.groups:
            return 0
        firing = [a.labels for g in self.aggregator.groups.values() for a in g.alerts.values()
                  if a.status == "firing"]

        def muted(labels: Any) -> bool:
            if inhibited(labels, firing, self.config.inhibit_rules):
                return True
            return any(s.mutes(labels, now) for s in self._silences(now))

        notices = self.aggregator.flush(now, muted)
        if not notices:
            return 0
        rows = [row for n in notices for row in self._rows(n)]
        try:
            with self.engine.begin() as conn:
                enqueue(conn, rows, now)
        except Exception:
            self.aggregator.forget([n.group_key for n in notices], now)
            raise
        self.enqueued += len(rows)
        self.wake.set()
        return len(rows)

    def _silences(self, now: float) -> list[Silence]:
        """The tenants' silences, read at most every SILENCES_TTL_S."""
        if self._silences_read_at is None or now - self._silences_read_at >= SILENCES_TTL_S:
            self._silence_cache = [Silence(s.id, s.namespace, matchers_from_json(s.matchers), s.starts_at.timestamp(),
                                           s.ends_at.timestamp()) for s in active_silences(self.engine, now)]
            self._silences_read_at = now
        return self._silence_cache

    def _rows(self, notice: GroupNotice) -> list[dict[str, Any]]:
        payload = alertmanager_group_payload(notice, notice.receiver, self.api_url)
        tenant = notice.alerts[0].labels.get("tenant", "")
        alert_ids = sorted({a.alert_id for a in notice.alerts if a.alert_id is not None})
        return [{"dedup_id": f"cfn-{uuid.uuid4().hex}", "namespace": tenant, "receiver": notice.receiver,
                 "channel": ch, "group_key": notice.group_key, "status": notice.status, "payload": payload,
                 "alert_ids": alert_ids} for ch in self._channels(notice.receiver)]


def _notifier(channels: ChannelSettings | None) -> Notifier:
    """A Notifier that sends e-mail and SMS through the platform's settings (one attempt per call)."""
    channels = channels or ChannelSettings()
    return Notifier(smtp=channels.smtp, sms=channels.sms, max_attempts=1)


def _summary(spec: AlertRuleSpec, state: RuleState) -> str:
    if spec.kind == "threshold":
        return (f"{spec.function}: {spec.aggregate}({spec.metric}) over {spec.window_s:g}s {spec.op} {spec.value:g} "
                f"(now {state.value if state.value is None else round(state.value, 4)})")
    return f"{spec.function}: anomaly detected (score {state.value})"


@ray.remote(num_cpus=0, max_restarts=-1)
class AlertDispatcher:
    """Ray actor: evaluates rules every `interval_s`, flushes groups every 0.1 s, and runs the outbox worker."""

    def __init__(self, database_url: str, lake_path: str, api_url: str, channels: ChannelSettings | None = None,
                 config: AlertingConfig | None = None, interval_s: float = 1.0) -> None:
        wake = threading.Event()  # the engine sets it after committing notices; the worker then looks at once
        self.engine = AlertEngine(database_url, lake_path, api_url, config=config, wake=wake)
        self.worker = OutboxWorker(self.engine.engine, _notifier(channels), wake=wake)
        self.interval_s = interval_s
        self.worker.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="alert-loop")
        self._thread.start()

    def _loop(self) -> None:
        last_eval = 0.0
        while not self._stop.wait(FLUSH_EVERY_S):
            try:
                if time.monotonic() - last_eval >= self.interval_s:
                    last_eval = time.monotonic()
                    self.engine.evaluate(time.time())
                self.engine.flush()
            except Exception:
                log.exception("alert tick failed")

    def configure(self, channels: ChannelSettings, config: AlertingConfig | None = None) -> None:
        """Use these channel settings and this alerting file from now on (called at every platform start)."""
        self.worker.notifier = _notifier(channels)
        if config is not None:
            self.engine.config = config

    def stats(self) -> dict[str, Any]:
        """Counters."""
        return {"pid": os.getpid(), "evaluations": self.engine.evaluations, "enqueued": self.engine.enqueued,
                "sent": self.worker.sent,
                "groups": len(self.engine.aggregator.groups)}
