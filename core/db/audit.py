"""The audit log: one row per change, written in the change's own transaction where it has one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.access import Caller
from core.db.tables import AuditEntry


@dataclass(frozen=True)
class Change:
    """What a caller changed: the operation, its target, the tenant the target belongs to, details."""

    caller: Caller
    operation: str
    target: str
    namespace: str | None = None  # the target's tenant; the caller's own unless said otherwise
    detail: dict[str, Any] = field(default_factory=dict)


async def record(conn: AsyncConnection, change: Change) -> None:
    """Append a change to the audit log inside the caller's transaction."""
    c = change.caller
    await conn.execute(insert(AuditEntry).values(
        namespace=change.namespace or c.namespace, actor_key_id=c.key_id, actor_name=c.key_name[:100],
        actor_tenant=c.namespace, operation=change.operation, target=change.target[:300], detail=change.detail))


async def record_alone(engine: AsyncEngine, change: Change) -> None:
    """Append a change in its own transaction (for changes that span several, e.g. a cancellation)."""
    async with engine.begin() as conn:
        await record(conn, change)


def entry_view(e: Any) -> dict[str, Any]:
    """The API shape of an audit entry."""
    return {"id": e.id, "at": e.at.isoformat(), "tenant": e.namespace,
            "actor": {"key_id": e.actor_key_id, "name": e.actor_name, "tenant": e.actor_tenant},
            "operation": e.operation, "target": e.target, "detail": e.detail}


async def entries(engine: AsyncEngine, *, tenant: str | None, since: datetime | None, limit: int,
                  operation: str | None = None) -> list[dict[str, Any]]:
    """Audit entries, newest first: of changes to one tenant's objects, or of all when `tenant` is None."""
    q = select(AuditEntry)
    if tenant is not None:
        q = q.where(AuditEntry.namespace == tenant)
    if since is not None:
        q = q.where(AuditEntry.at >= since)
    if operation is not None:
        q = q.where(AuditEntry.operation == operation)
    async with engine.connect() as conn:
        rows = (await conn.execute(q.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit))).all()
    return [entry_view(r) for r in rows]
