"""Alert acknowledgements' SQL (async, for the API): a developer or admin says a firing alert is being handled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.audit import Change, record
from core.db.tables import Alert


@dataclass(frozen=True)
class AlertAck:
    """An alert's state and acknowledgement after an acknowledge request."""

    alert_id: int
    state: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    changed: bool  # False: it was acknowledged already, or is not firing


async def acknowledge_alert(engine: AsyncEngine, namespace: str, alert_id: int, by: str, at: datetime,
                            change: Change) -> AlertAck | None:
    """Mark a tenant's firing alert acknowledged by BY at AT (audited in the same transaction); an alert already
    acknowledged keeps its first acknowledgement, a resolved one is left as it is. None: no such alert in the
    tenant."""
    async with engine.begin() as conn:
        row = (await conn.execute(select(Alert.state, Alert.acknowledged_by, Alert.acknowledged_at).where(
            Alert.id == alert_id, Alert.namespace == namespace).with_for_update())).first()
        if row is None:
            return None
        if row.state != "firing" or row.acknowledged_at is not None:
            return AlertAck(alert_id, row.state, row.acknowledged_by, row.acknowledged_at, changed=False)
        await conn.execute(update(Alert).where(Alert.id == alert_id).values(acknowledged_by=by[:100],
                                                                              acknowledged_at=at))
        await record(conn, change)
        return AlertAck(alert_id, row.state, by[:100], at, changed=True)
