"""The repository of completion-destination deliveries: what was delivered, and what still has to be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.tables import DestinationDelivery

# terminal top-level function tasks of recent hours whose version names the destination for their status and
# that have no delivery row; tasks a destination started (Idempotency-Key `destination:…`) have none to deliver
UNDELIVERED = text(
    "SELECT t.id, t.namespace, t.function_name, t.version, t.status, t.attempt FROM tasks t"
    " JOIN function_versions v ON v.function_id = t.function_id AND v.version = t.version"
    " WHERE t.kind = 'function' AND t.parent_id IS NULL"
    " AND t.finished_at > now() - CAST(:hours AS float8) * interval '1 hour'"
    " AND ((t.status = 'succeeded' AND jsonb_typeof(v.config->'on_success') = 'object')"
    "   OR (t.status IN ('failed', 'timed_out') AND jsonb_typeof(v.config->'on_failure') = 'object'))"
    " AND (t.idempotency_key IS NULL OR t.idempotency_key NOT LIKE 'destination:%')"
    " AND NOT EXISTS (SELECT 1 FROM destination_deliveries d WHERE d.task_id = t.id AND d.attempt = t.attempt)"
    " ORDER BY t.finished_at LIMIT :limit"
)


@dataclass(frozen=True)
class Undelivered:
    """An ended task whose completion has not been delivered yet."""

    task_id: str
    namespace: str
    function: str
    version: int
    status: str
    attempt: int


class DeliveryLog:
    """Reads and writes `destination_deliveries`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def undelivered(self, *, hours: float = 24.0, limit: int = 10_000) -> list[Undelivered]:
        """Ended tasks of the last `hours` still owed a delivery, oldest first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(UNDELIVERED, {"hours": hours, "limit": limit})).all()
        return [Undelivered(r[0], r[1], r[2], int(r[3]), r[4], int(r[5])) for r in rows]

    async def record(self, **row: Any) -> None:
        """Write (or overwrite) the outcome of one delivery: task_id, attempt, destination, target,
        webhook_id, status, tries, error, target_task_id."""
        stmt = pg_insert(DestinationDelivery).values(**row, at=func.now())
        stmt = stmt.on_conflict_do_update(index_elements=["task_id", "attempt"], set_={
            k: stmt.excluded[k] for k in (*row, "at") if k not in ("task_id", "attempt")})
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def get(self, task_id: str, attempt: int) -> dict[str, Any] | None:
        """One delivery's row as a dict (for tests and operators)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(text("SELECT * FROM destination_deliveries WHERE task_id = :t AND attempt = :a"),
                                      {"t": task_id, "a": attempt})).mappings().first()
        return None if row is None else dict(row)
