"""Monitoring routes: metrics (DuckDB over the lake), Prometheus, anomalies, alert rules and alerts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Query, Response

from actors.handles import shard_of
from analytics.aggregates import function_metrics, functions_metrics, parse_window, timeseries
from analytics.alerting import parse_rule
from cluster.sandbox.warm import host_metrics
from core.db.alert_acks import acknowledge_alert
from core.db.audit import Change
from core.errors import Conflict, InvalidInput, NotFound
from serve_app.http.dependencies import CallerDep, PlatformDep
from serve_app.http.params import AlertId, AnomalyId, RuleId, RuleIdQuery


def _window(text: str) -> float:
    try:
        return parse_window(text)
    except ValueError as exc:
        raise InvalidInput(f"window: {exc}") from None


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"since {text!r} is not an ISO-8601 time or Unix seconds") from None


def anomaly_view(r: Any) -> dict[str, Any]:
    """The contract's anomaly shape (plus details and feedback)."""
    return {"id": r.id, "function": r.function, "version": r.version, "kind": r.kind, "metric": r.metric,
            "observed": r.observed, "expected_low": r.expected_low, "expected_high": r.expected_high,
            "score": r.score, "task_id": r.task_id, "detected_at": r.detected_at.isoformat(),
            "detector": r.detector, "details": r.details, "feedback": r.feedback}


def rule_view(r: Any) -> dict[str, Any]:
    """A rule with its id and evaluation state (webhook secrets masked)."""
    spec = dict(r.spec)
    spec["channels"] = [{**c, "secret": "***"} if "secret" in c else c for c in spec.get("channels", [])]
    st = dict(r.state or {})
    return {"id": r.id, **spec, "state": st.get("state", "normal"), "created_at": r.created_at.isoformat()}


def register(app: FastAPI) -> None:
    """Add the monitoring routes to the app."""

    @app.get("/v1/functions/{name}/metrics")
    async def metrics(p: PlatformDep, c: CallerDep, name: str, window: str = "1h") -> dict[str, Any]:
        await p.functions.get(c.namespace, name)
        w = _window(window)
        pending = p.monitoring.pending() if p.monitoring else []
        return await asyncio.to_thread(function_metrics, p.lake, name, w, pending=pending, namespace=c.namespace)

    @app.get("/v1/metrics")
    async def every_function_metrics(p: PlatformDep, c: CallerDep, window: str = "1h") -> dict[str, Any]:
        # the overview's figures for every function of the tenant in one lake query, not one request per function
        w = _window(window)
        pending = p.monitoring.pending() if p.monitoring else []
        figures = await asyncio.to_thread(functions_metrics, p.lake, w, pending=pending, namespace=c.namespace)
        return {"window_s": w, "functions": figures}

    @app.get("/v1/functions/{name}/timeseries")
    async def series(p: PlatformDep, c: CallerDep, name: str, window: str = "1h",
                     bucket: str = "1m") -> dict[str, Any]:
        await p.functions.get(c.namespace, name)
        w, b = _window(window), _window(bucket)
        pending = p.monitoring.pending() if p.monitoring else []
        try:
            pts = await asyncio.to_thread(timeseries, p.lake, name, w, b, pending=pending, namespace=c.namespace)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return {"function": name, "window_s": w, "bucket_s": b, "points": pts}

    @app.get("/metrics")
    async def prometheus(p: PlatformDep, c: CallerDep) -> Response:
        if p.monitoring is None:
            return Response(b"", media_type="text/plain")
        # the operator sees every series; any other key only its own tenant's
        body = p.monitoring.prom.render(None if c.is_operator else c.namespace)
        if c.is_operator:  # the host's warm state (functions, evictions, PSS by kind) is platform-wide
            body += await asyncio.to_thread(host_metrics, p.settings.warm_memory_mb)
        return Response(body, media_type=p.monitoring.prom.content_type)

    @app.get("/v1/anomalies")
    async def anomalies(p: PlatformDep, c: CallerDep, function: str | None = None, since: str | None = None,
                        kind: str | None = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        rows = await p.monitoring_store.anomalies(c.namespace, function=function, kind=kind, since=_since(since),
                                                  limit=limit)
        return {"anomalies": [anomaly_view(r) for r in rows]}

    @app.post("/v1/anomalies/{anomaly_id}/feedback")
    async def feedback(p: PlatformDep, c: CallerDep, anomaly_id: AnomalyId,
                       body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        verdict = body.get("verdict")
        if verdict not in ("false_positive", "confirmed"):
            raise InvalidInput("verdict must be 'false_positive' or 'confirmed'")
        fn = await p.monitoring_store.set_feedback(c, anomaly_id, verdict)
        if p.detectors:
            await p.detectors[shard_of(c.namespace, fn, len(p.detectors))].feedback.remote(anomaly_id, verdict)
        return {"id": anomaly_id, "feedback": verdict}

    @app.post("/v1/alert-rules", status_code=201)
    async def create_rule(p: PlatformDep, c: CallerDep, body: Annotated[Any, Body()]) -> dict[str, Any]:
        spec = parse_rule(body)
        types = [ch.type for ch in spec.channels]
        if (why := p.channels.refusal(types)) is not None:
            missing = {t: list(p.channels.missing[t]) for t in dict.fromkeys(types) if t in p.channels.missing}
            raise InvalidInput(why, detail={"missing": missing})
        if not spec.channels and p.alerting.route.receiver is None:
            raise InvalidInput(f"channels: the rule has none, and {p.settings.alerting_config} routes nowhere (no "
                               "receivers); give the rule channels or configure receivers and a route there")
        await p.functions.get(c.namespace, spec.function)  # 404 for a rule on an unknown function
        row = await p.monitoring_store.create_rule(c, name=spec.name, function=spec.function,
                                                   spec=spec.model_dump(mode="json", exclude_none=True))
        return rule_view(row)

    @app.get("/v1/alert-rules")
    async def list_rules(p: PlatformDep, c: CallerDep) -> dict[str, Any]:
        return {"rules": [rule_view(r) for r in await p.monitoring_store.rules(c.namespace)]}

    @app.delete("/v1/alert-rules/{rule_id}", status_code=204)
    async def delete_rule(p: PlatformDep, c: CallerDep, rule_id: RuleId) -> Response:
        await p.monitoring_store.delete_rule(c, rule_id)
        return Response(status_code=204)

    @app.get("/v1/alerts")
    async def alerts(p: PlatformDep, c: CallerDep, state: Literal["firing", "resolved"] | None = None,
                     rule_id: RuleIdQuery = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        rows, deliveries = await p.monitoring_store.alerts(c.namespace, state=state, rule_id=rule_id, limit=limit)
        by_alert: dict[int, list[dict[str, Any]]] = {}
        for d in deliveries:
            by_alert.setdefault(d.alert_id, []).append({
                "channel": d.channel, "notification": d.notification, "attempt": d.attempt, "status": d.status,
                "at": d.at.isoformat(), "error": d.error})
        return {"alerts": [{"id": a.id, "rule_id": a.rule_id, "function": a.function, "state": a.state,
                            "labels": (a.details or {}).get("labels", {}),
                            "value": a.value, "started_at": a.started_at.isoformat(),
                            "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None,
                            "acknowledged_by": a.acknowledged_by,
                            "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
                            "deliveries": by_alert.get(a.id, [])} for a in rows]}

    @app.post("/v1/alerts/{alert_id}/ack")
    async def ack_alert(p: PlatformDep, c: CallerDep, alert_id: AlertId) -> dict[str, Any]:
        by = c.key_name or (f"key {c.key_id}" if c.key_id is not None else c.namespace)
        ack = await acknowledge_alert(p.engine, c.namespace, alert_id, by, datetime.now(UTC),
                                      Change(c, "alerts.ack", f"alert/{alert_id}"))
        if ack is None:
            raise NotFound(f"no alert with id {alert_id}")
        if ack.state != "firing":
            raise Conflict(f"alert {alert_id} is {ack.state}, not firing: only a firing alert can be acknowledged")
        return {"id": alert_id, "state": ack.state, "acknowledged_by": ack.acknowledged_by,
                "acknowledged_at": ack.acknowledged_at.isoformat() if ack.acknowledged_at else None,
                "already_acknowledged": not ack.changed}
