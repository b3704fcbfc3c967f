"""The alert outbox's SQL: enqueue notices, claim due ones with a lease, record attempts, list silences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.tables import AlertDelivery, AlertNotification, AlertSilence


@dataclass(frozen=True)
class OutboxRow:
    """A claimed notice: what to send, where, and how many attempts it already had."""

    id: int
    dedup_id: str
    namespace: str
    receiver: str
    channel: dict[str, Any]
    status: str
    payload: dict[str, Any]
    alert_ids: list[int]
    attempts: int


def _ts(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def enqueue(conn: Connection, rows: Sequence[dict[str, Any]], now: float) -> list[int]:
    """Insert notices (due now) in the caller's transaction; return their ids."""
    if not rows:
        return []
    values = [{**r, "state": "pending", "attempts": 0, "next_attempt_at": _ts(now), "created_at": _ts(now)}
              for r in rows]
    return list(conn.execute(insert(AlertNotification).values(values).returning(AlertNotification.id)).scalars())


def claim_due(engine: Engine, now: float, lease_s: float, limit: int = 50) -> list[OutboxRow]:
    """Take up to `limit` due pending notices, pushing their next attempt `lease_s` ahead (a crash mid-send
    leaves them due again after the lease); rows another worker holds are skipped."""
    with engine.begin() as conn:
        rows = conn.execute(
            select(AlertNotification).where(AlertNotification.state == "pending",
                                            AlertNotification.next_attempt_at <= _ts(now))
            .order_by(AlertNotification.next_attempt_at, AlertNotification.id).limit(limit)
            .with_for_update(skip_locked=True)).all()
        if rows:
            conn.execute(update(AlertNotification).where(AlertNotification.id.in_([r.id for r in rows]))
                         .values(next_attempt_at=_ts(now + lease_s)))
        return [OutboxRow(r.id, r.dedup_id, r.namespace, r.receiver, dict(r.channel), r.status, dict(r.payload),
                          list(r.alert_ids or []), r.attempts) for r in rows]


def release_claims(engine: Engine, now: float) -> int:
    """Make every pending notice due now (at start: claims of a worker that died are void); return how many."""
    with engine.begin() as conn:
        res = conn.execute(update(AlertNotification).where(
            AlertNotification.state == "pending", AlertNotification.next_attempt_at > _ts(now))
            .values(next_attempt_at=_ts(now)))
        return int(res.rowcount or 0)


def record_attempt(engine: Engine, row: OutboxRow, *, attempt: int, ok: bool, at: float, error: str | None,
                   channel_label: str, retry_at: float | None) -> None:
    """Store one attempt: per alert it lists (for `GET /v1/alerts`) and on the notice, which is delivered,
    pending again at `retry_at`, or failed for good (retry_at None)."""
    state = "delivered" if ok else ("pending" if retry_at is not None else "failed")
    with engine.begin() as conn:
        if row.alert_ids:
            conn.execute(insert(AlertDelivery).values([
                {"alert_id": aid, "notification": row.status, "channel": channel_label, "attempt": attempt,
                 "status": "delivered" if ok else "failed", "at": _ts(at), "error": error,
                 "notification_id": row.id} for aid in row.alert_ids]))
        conn.execute(update(AlertNotification).where(AlertNotification.id == row.id).values(
            state=state, attempts=attempt, last_error=error, delivered_at=_ts(at) if ok else None,
            next_attempt_at=_ts(retry_at if retry_at is not None else at)))


def last_notices(engine: Engine, since: float) -> list[tuple[str, dict[str, Any], float]]:
    """The newest notice of every group created since `since`: (group_key, payload, created_at)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(AlertNotification.group_key, AlertNotification.payload, AlertNotification.created_at)
            .where(AlertNotification.created_at >= _ts(since))
            .ext(distinct_on(AlertNotification.group_key))
            .order_by(AlertNotification.group_key, AlertNotification.created_at.desc())).all()
    return [(r[0], dict(r[1]), r[2].timestamp()) for r in rows]


def active_silences(engine: Engine, now: float) -> list[Any]:
    """Silences not yet expired (pending ones too: they may start before the next read)."""
    with engine.connect() as conn:
        return list(conn.execute(select(AlertSilence).where(AlertSilence.ends_at > _ts(now))).all())


def retry_delay(failed_attempts: int, base_s: float = 1.0, cap_s: float = 300.0) -> float:
    """Backoff before the next attempt: doubling from `base_s`, capped."""
    return float(min(cap_s, base_s * 2 ** max(0, failed_attempts - 1)))


async def list_notifications(engine: AsyncEngine, namespace: str, limit: int) -> list[Any]:
    """A tenant's newest notices (outbox rows), for the API."""
    async with engine.connect() as conn:
        return list((await conn.execute(select(AlertNotification).where(AlertNotification.namespace == namespace)
                                        .order_by(AlertNotification.id.desc()).limit(limit))).all())
