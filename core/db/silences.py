"""Silences' SQL (async, for the API): create, list and expire a tenant's silences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.audit import Change, record
from core.db.tables import AlertSilence


async def create_silence(engine: AsyncEngine, *, silence_id: str, namespace: str, matchers: list[dict[str, Any]],
                         starts_at: datetime, ends_at: datetime, created_by: str, comment: str,
                         change: Change | None = None) -> None:
    """Store a new silence (and the change's audit entry, if given, in the same transaction)."""
    async with engine.begin() as conn:
        await conn.execute(insert(AlertSilence).values(
            id=silence_id, namespace=namespace, matchers=matchers, starts_at=starts_at, ends_at=ends_at,
            created_by=created_by, comment=comment))
        if change is not None:
            await record(conn, change)


async def list_silences(engine: AsyncEngine, namespace: str) -> list[Any]:
    """A tenant's silences, newest first."""
    async with engine.connect() as conn:
        return list((await conn.execute(select(AlertSilence).where(AlertSilence.namespace == namespace)
                                        .order_by(AlertSilence.updated_at.desc(), AlertSilence.id))).all())


async def expire_silence(engine: AsyncEngine, namespace: str, silence_id: str, now: datetime,
                         change: Change | None = None) -> bool:
    """End a tenant's silence now (one not started yet ends before it starts); False if there is no such silence."""
    async with engine.begin() as conn:
        row = (await conn.execute(select(AlertSilence.starts_at, AlertSilence.ends_at).where(
            AlertSilence.id == silence_id, AlertSilence.namespace == namespace).with_for_update())).first()
        if row is None:
            return False
        if row.ends_at > now:
            await conn.execute(update(AlertSilence).where(AlertSilence.id == silence_id).values(
                ends_at=now, starts_at=min(row.starts_at, now), updated_at=now))
        if change is not None:
            await record(conn, change)
        return True
