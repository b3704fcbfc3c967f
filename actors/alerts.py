"""AlertDispatcher: a Ray actor that evaluates every alert rule about once a second and notifies channels.

Threshold rules read the window's aggregate with DuckDB over the Parquet lake; anomaly rules read new
anomalies from PostgreSQL. A transition (firing / resolved) creates or closes an `alerts` row and sends one
notification per channel in a worker thread, so a slow or dead channel never blocks evaluation; every
attempt is recorded in `alert_deliveries`, and a notification that failed all its attempts is retried later
(never dropped while the platform runs).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import ray
from sqlalchemy import insert, select, update

from analytics.aggregates import aggregate
from analytics.alerting import AlertRuleSpec, Attempt, Notification, Notifier, RuleState, step_anomaly, step_threshold
from analytics.alerting.channel_config import ChannelSettings
from analytics.alerting.delivery import delivered
from analytics.lake import open_lake
from core.db.engine import make_engine
from core.db.tables import Alert, AlertDelivery, AlertRule
from core.db.tables import Anomaly as AnomalyRow

log = logging.getLogger(__name__)
ANOMALY_QUIET_S = 300.0
REDELIVER_AFTER_S = 30.0


class AlertEngine:
    """Rule evaluation and delivery, independent of Ray."""

    def __init__(self, database_url: str, lake_path: str, api_url: str, *, notifier: Notifier | None = None,
                 anomaly_quiet_s: float = ANOMALY_QUIET_S) -> None:
        self.engine = make_engine(database_url, pool_size=3)
        self.lake = open_lake(lake_path)
        self.api_url = api_url
        self.notifier = notifier or Notifier()
        self.quiet_s = anomaly_quiet_s
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="deliver")
        self.retry: list[tuple[float, dict[str, Any], Notification, int]] = []
        self._lock = threading.Lock()
        self.evaluations = 0

    def tick(self, now: float | None = None) -> int:
        """Evaluate every live rule once; return the number of transitions."""
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            rules = conn.execute(select(AlertRule).where(AlertRule.deleted_at.is_(None))).all()
        changed = 0
        for rule in rules:
            try:
                changed += self._evaluate(rule, now)
            except Exception:
                log.exception("evaluating rule %s failed", rule.id)
        self._redeliver(now)
        self.evaluations += 1
        return changed

    def _evaluate(self, rule: Any, now: float) -> int:
        spec = AlertRuleSpec.model_validate(rule.spec)
        raw = dict(rule.state or {})
        alert_id = raw.pop("alert_id", None)
        state = RuleState(**raw) if raw else RuleState.initial(now)
        if spec.kind == "threshold":
            assert spec.metric and spec.aggregate and spec.window_s
            value = aggregate(self.lake, spec.function, spec.metric, spec.aggregate, spec.window_s,
                              now=now, namespace=rule.namespace)
            new, transition = step_threshold(spec, state, value, now)
        else:
            since = datetime.fromtimestamp(now - self.quiet_s, UTC)
            with self.engine.connect() as conn:
                rows = conn.execute(select(AnomalyRow).where(
                    AnomalyRow.namespace == rule.namespace, AnomalyRow.function == spec.function,
                    AnomalyRow.detected_at > since, AnomalyRow.feedback.is_distinct_from("false_positive"))).all()
            anomalies = [{"function": r.function, "kind": r.kind, "score": r.score, "detected_at": r.detected_at,
                          "metric": r.metric, "observed": r.observed} for r in rows]
            new, transition = step_anomaly(spec, state, anomalies, now, self.quiet_s)
        with self.engine.begin() as conn:
            if transition == "firing":
                alert_id = conn.execute(insert(Alert).values(
                    rule_id=rule.id, namespace=rule.namespace, function=spec.function, state="firing",
                    value=new.value, started_at=datetime.fromtimestamp(now, UTC),
                    details={"episode_id": new.episode_id}).returning(Alert.id)).scalar_one()
            elif transition == "resolved" and alert_id is not None:
                conn.execute(update(Alert).where(Alert.id == alert_id).values(
                    state="resolved", resolved_at=datetime.fromtimestamp(now, UTC), value=new.value))
            elif new.state == "firing" and alert_id is not None:
                conn.execute(update(Alert).where(Alert.id == alert_id).values(value=new.value))
            conn.execute(update(AlertRule).where(AlertRule.id == rule.id).values(
                state={**asdict(new), "alert_id": alert_id if new.state == "firing" or transition else None}))
        if transition is not None and alert_id is not None:
            self._notify(rule, spec, alert_id, transition, new, now)
            return 1
        return 0

    def _notify(self, rule: Any, spec: AlertRuleSpec, alert_id: int, status: str, state: RuleState,
                now: float) -> None:
        started = state.fired_at or now
        n = Notification(id=f"cfa-{alert_id}-{status}", rule_name=spec.name, function=spec.function,
                         status=status,  # type: ignore[arg-type]
                         value=state.value, started_at=started, ended_at=now if status == "resolved" else None,
                         labels={**spec.labels, "kind": spec.kind, "namespace": rule.namespace},
                         annotations={**spec.annotations, "summary": _summary(spec, state)},
                         external_url=self.api_url, generator_url=f"{self.api_url}/v1/alerts?rule_id={rule.id}")
        for ch in rule.spec.get("channels", []):
            self.pool.submit(self._deliver, alert_id, ch, n, 0)

    def _deliver(self, alert_id: int, channel: dict[str, Any], n: Notification, round_: int) -> None:
        from analytics.alerting.rules import AlertRuleSpec as _Spec

        ch = _Spec.model_validate({"name": "x", "function": "x", "kind": "anomaly", "channels": [channel]}).channels[0]
        label = _channel_label(channel)
        offset = round_ * 100

        def record(a: Attempt) -> None:
            with self.engine.begin() as conn:
                conn.execute(insert(AlertDelivery).values(
                    alert_id=alert_id, notification=n.status, channel=label, attempt=a.attempt + offset,
                    status=a.status, at=datetime.fromtimestamp(a.at, UTC), error=a.error))

        attempts = self.notifier.deliver(ch, n, label=label, on_attempt=record)
        if not delivered(attempts):
            with self._lock:
                self.retry.append((time.time() + REDELIVER_AFTER_S, {"alert_id": alert_id, "channel": channel}, n,
                                   round_ + 1))

    def _redeliver(self, now: float) -> None:
        with self._lock:
            due = [r for r in self.retry if r[0] <= now]
            self.retry = [r for r in self.retry if r[0] > now]
        for _, meta, n, round_ in due:
            self.pool.submit(self._deliver, meta["alert_id"], meta["channel"], n, round_)


def _notifier(channels: ChannelSettings | None) -> Notifier:
    """A Notifier that sends e-mail and SMS through the platform's settings."""
    channels = channels or ChannelSettings()
    return Notifier(smtp=channels.smtp, sms=channels.sms)


def _channel_label(channel: dict[str, Any]) -> str:
    t = channel.get("type")
    target = channel.get("url") or channel.get("webhook_url") or channel.get("to") or ""
    if t == "slack":
        target = str(target).split("/services/")[0] + "/services/…"
    return f"{t}:{target}"[:300]


def _summary(spec: AlertRuleSpec, state: RuleState) -> str:
    if spec.kind == "threshold":
        return (f"{spec.function}: {spec.aggregate}({spec.metric}) over {spec.window_s:g}s {spec.op} {spec.value:g} "
                f"(now {state.value if state.value is None else round(state.value, 4)})")
    return f"{spec.function}: anomaly detected (score {state.value})"


@ray.remote(num_cpus=0, max_restarts=-1)
class AlertDispatcher:
    """Ray actor running AlertEngine.tick about once a second in a background thread."""

    def __init__(self, database_url: str, lake_path: str, api_url: str, channels: ChannelSettings | None = None,
                 interval_s: float = 1.0) -> None:
        self.engine = AlertEngine(database_url, lake_path, api_url, notifier=_notifier(channels))
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="alert-loop")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.engine.tick()
            except Exception:
                log.exception("alert tick failed")

    def configure(self, channels: ChannelSettings) -> None:
        """Use these channel settings from now on (the platform calls this at start: the actor may predate it)."""
        self.engine.notifier = _notifier(channels)

    def stats(self) -> dict[str, Any]:
        """Counters."""
        return {"evaluations": self.engine.evaluations, "pending_redeliveries": len(self.engine.retry)}


