"""Silences in Alertmanager API v2's shape, scoped to the caller's tenant (create, list, expire), and the
tenant's alert notifications (the outbox) for the CLI and the dashboard."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Body, FastAPI, Path, Query

from analytics.alerting.labels import channel_label
from analytics.alerting.silences import Silence, matchers_from_json, parse_silence
from core.db.audit import Change
from core.db.outbox import list_notifications
from core.db.silences import create_silence, expire_silence, list_silences
from core.errors import NotFound
from serve_app.dependencies import CallerDep, PlatformDep

SilenceId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$", description="a silence id (UUID)")]


def silence_view(r: Any, now: float) -> dict[str, Any]:
    """Alertmanager's gettableSilence."""
    s = Silence(r.id, r.namespace, matchers_from_json(r.matchers), r.starts_at.timestamp(), r.ends_at.timestamp())
    return {"id": r.id, "status": {"state": s.state(now)}, "updatedAt": _iso(r.updated_at), "matchers": r.matchers,
            "startsAt": _iso(r.starts_at), "endsAt": _iso(r.ends_at), "createdBy": r.created_by,
            "comment": r.comment}


def notification_view(r: Any) -> dict[str, Any]:
    """One outbox row: what was said, to whom, and how its delivery stands."""
    alerts = (r.payload or {}).get("alerts", [])
    return {"id": r.id, "dedup_id": r.dedup_id, "receiver": r.receiver, "channel": channel_label(r.channel),
            "status": r.status, "state": r.state, "attempts": r.attempts, "alert_ids": r.alert_ids,
            "functions": sorted({a.get("labels", {}).get("function", "") for a in alerts}),
            "alertname": (r.payload or {}).get("groupLabels", {}).get("alertname", ""),
            "created_at": _iso(r.created_at), "delivered_at": _iso(r.delivered_at) if r.delivered_at else None,
            "last_error": r.last_error}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def register(app: FastAPI) -> None:
    """Add the silence routes to the app."""

    @app.post("/v1/silences")
    async def post_silence(p: PlatformDep, c: CallerDep, body: Annotated[Any, Body()]) -> dict[str, str]:
        posted = parse_silence(body)
        sid = str(uuid.uuid4())
        await create_silence(p.engine, silence_id=sid, namespace=c.namespace,
                             matchers=[m.model_dump() for m in posted.matchers], starts_at=posted.startsAt,
                             ends_at=posted.endsAt, created_by=posted.createdBy, comment=posted.comment,
                             change=Change(c, "silences.create", f"silence/{sid}",
                                           detail={"comment": posted.comment, "ends_at": posted.endsAt.isoformat()}))
        return {"silenceID": sid}

    @app.get("/v1/silences")
    async def get_silences(p: PlatformDep, c: CallerDep) -> list[dict[str, Any]]:
        now = datetime.now(UTC).timestamp()
        return [silence_view(r, now) for r in await list_silences(p.engine, c.namespace)]

    @app.get("/v1/alert-notifications")
    async def get_notifications(p: PlatformDep, c: CallerDep,
                                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        return {"notifications": [notification_view(r) for r in await list_notifications(p.engine, c.namespace,
                                                                                          limit)]}

    @app.delete("/v1/silences/{silence_id}")
    async def delete_silence(p: PlatformDep, c: CallerDep, silence_id: SilenceId) -> dict[str, str]:
        if not await expire_silence(p.engine, c.namespace, silence_id.lower(), datetime.now(UTC),
                                    Change(c, "silences.expire", f"silence/{silence_id.lower()}")):
            raise NotFound(f"no silence with id {silence_id}")
        return {"silenceID": silence_id.lower(), "status": "expired"}
