"""The monitoring repository: anomalies and their feedback, alert rules, and alerts with their deliveries (each
change audited in its own transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from core.access import Caller
from core.db.audit import Change, record
from core.db.tables import Alert, AlertDelivery, AlertRule
from core.db.tables import Anomaly as AnomalyRow
from core.errors import NotFound


class MonitoringStore:
    """Reads and changes of anomalies, alert rules and alerts, always within one tenant."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def anomalies(self, namespace: str, *, function: str | None, kind: str | None, since: datetime | None,
                        limit: int) -> Sequence[AnomalyRow]:
        """The newest anomalies, optionally of one function, of one kind, or since a time."""
        q = select(AnomalyRow).where(AnomalyRow.namespace == namespace)
        if function:
            q = q.where(AnomalyRow.function == function)
        if kind:
            q = q.where(AnomalyRow.kind == kind)
        if since is not None:
            q = q.where(AnomalyRow.detected_at >= since)
        async with self.sessions() as s:
            return (await s.execute(q.order_by(AnomalyRow.detected_at.desc(), AnomalyRow.id.desc())
                                    .limit(limit))).scalars().all()

    async def set_feedback(self, caller: Caller, anomaly_id: int, verdict: str) -> str:
        """Record a verdict on an anomaly of the caller's tenant (audited); the anomaly's function."""
        async with self.engine.begin() as conn:
            fn = (await conn.execute(update(AnomalyRow).where(
                AnomalyRow.id == anomaly_id, AnomalyRow.namespace == caller.namespace).values(feedback=verdict)
                .returning(AnomalyRow.function))).scalar()
            if fn is None:
                raise NotFound(f"no anomaly with id {anomaly_id}")
            await record(conn, Change(caller, "anomalies.feedback", f"anomaly/{anomaly_id}",
                                      detail={"verdict": verdict}))
        return str(fn)

    async def create_rule(self, caller: Caller, *, name: str, function: str, spec: dict[str, Any]) -> AlertRule:
        """A new alert rule of the caller's tenant (audited)."""
        async with self.engine.begin() as conn:
            rid = (await conn.execute(insert(AlertRule).values(
                namespace=caller.namespace, name=name, function=function, spec=spec, state={})
                .returning(AlertRule.id))).scalar_one()
            await record(conn, Change(caller, "rules.create", f"alert-rule/{rid}",
                                      detail={"name": name, "function": function}))
        async with self.sessions() as s:
            return (await s.execute(select(AlertRule).where(AlertRule.id == rid))).scalar_one()

    async def rules(self, namespace: str) -> Sequence[AlertRule]:
        """A tenant's live alert rules, oldest first."""
        async with self.sessions() as s:
            return (await s.execute(select(AlertRule).where(
                AlertRule.namespace == namespace, AlertRule.deleted_at.is_(None))
                .order_by(AlertRule.id))).scalars().all()

    async def delete_rule(self, caller: Caller, rule_id: int) -> None:
        """Delete one of the caller's tenant's rules (audited); NotFound if there is no such live rule."""
        async with self.engine.begin() as conn:
            res = await conn.execute(update(AlertRule).where(
                AlertRule.id == rule_id, AlertRule.namespace == caller.namespace, AlertRule.deleted_at.is_(None)
            ).values(deleted_at=datetime.now(UTC)))
            if res.rowcount == 0:
                raise NotFound(f"no alert rule with id {rule_id}")
            await record(conn, Change(caller, "rules.delete", f"alert-rule/{rule_id}"))

    async def alerts(self, namespace: str, *, state: str | None, rule_id: int | None,
                     limit: int) -> tuple[Sequence[Alert], Sequence[AlertDelivery]]:
        """A tenant's newest alerts (optionally in one state or of one rule) and their deliveries."""
        q = select(Alert).where(Alert.namespace == namespace)
        if state:
            q = q.where(Alert.state == state)
        if rule_id is not None:
            q = q.where(Alert.rule_id == rule_id)
        async with self.sessions() as s:
            rows = (await s.execute(q.order_by(Alert.started_at.desc()).limit(limit))).scalars().all()
            ids = [a.id for a in rows]
            deliveries = (await s.execute(select(AlertDelivery).where(AlertDelivery.alert_id.in_(ids))
                                          .order_by(AlertDelivery.id))).scalars().all() if ids else []
        return rows, deliveries
