"""Tenant, key and audit routes: the operator manages every tenant, a tenant's admin only its own keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Body, FastAPI, Path, Query
from fastapi.responses import JSONResponse

from core.access import ROLE_NAMES, Caller, Role, parse_role
from core.db.audit import entries
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.models import DEFAULT_NAMESPACE, INT32_MAX, NAME_PATTERN, NAME_RE
from serve_app.dependencies import CallerDep, PlatformDep
from serve_app.monitoring_routes import _since

KeyId = Annotated[int, Path(ge=1, le=INT32_MAX)]
KEY_FIELDS = {"tenant", "role", "name", "expires_at"}


def _object(body: Any, example: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput(f"send a JSON object, e.g. {example}")
    return body


def _tenant_name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise InvalidInput(f"tenant name {value!r} must match {NAME_PATTERN} (lowercase letters, digits, dashes)")
    return value


def _expiry(value: Any) -> datetime | None:
    """An optional ISO-8601 time in the future (a time without offset is UTC)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("expires_at must be an ISO-8601 time string, e.g. \"2030-01-01T00:00:00Z\"")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"expires_at {value!r} is not an ISO-8601 time, e.g. \"2030-01-01T00:00:00Z\"") from None
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    if at <= datetime.now(UTC):
        raise InvalidInput(f"expires_at {value!r} is in the past")
    return at


def _scope(caller: Caller, tenant: str | None = None) -> str | None:
    """The tenant a caller's key operations are limited to: None (all) for the operator, else its own; another
    tenant is answered as if it did not exist."""
    if caller.is_operator:
        return tenant
    if tenant is not None and tenant != caller.namespace:
        raise NotFound(f"no tenant named {tenant!r}")
    return caller.namespace


def parse_key_request(caller: Caller, body: Any) -> tuple[str, Role, str, datetime | None]:
    """Validate POST /v1/keys: (tenant, role, name, expires_at)."""
    body = _object(body, '{"tenant": "team-a", "role": "developer", "name": "ci"}')
    extra = set(body) - KEY_FIELDS
    if extra:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(extra))} (allowed: {', '.join(sorted(KEY_FIELDS))})")
    tenant = _tenant_name(body.get("tenant", caller.namespace))
    try:
        role = parse_role(body.get("role"))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100 or "\x00" in name:
        raise InvalidInput("name must be a string of 1 to 100 characters saying what the key is for, e.g. \"ci\"")
    return tenant, role, name.strip(), _expiry(body.get("expires_at"))


def register(app: FastAPI) -> None:
    """Add the tenant, key and audit routes to the app."""

    @app.post("/v1/tenants", status_code=201)
    async def create_tenant(p: PlatformDep, c: CallerDep, body: Annotated[Any, Body()] = None) -> dict[str, Any]:
        if not c.is_operator:
            raise Forbidden(f"creating a tenant needs the admin role of the {DEFAULT_NAMESPACE!r} tenant (the "
                            "operator's key); this key is an admin of tenant " + repr(c.namespace),
                            detail={"role_needed": f"admin of {DEFAULT_NAMESPACE}"})
        body = _object(body, '{"name": "team-a"}')
        if set(body) - {"name"}:
            raise InvalidInput(f"unknown fields: {', '.join(sorted(set(body) - {'name'}))} (allowed: name)")
        return await p.keys.create_tenant(c, _tenant_name(body.get("name")))

    @app.get("/v1/tenants")
    async def list_tenants(p: PlatformDep, c: CallerDep) -> dict[str, Any]:
        return {"tenants": await p.keys.tenants(None if c.is_operator else c.namespace)}

    @app.post("/v1/keys", status_code=201)
    async def create_key(p: PlatformDep, c: CallerDep, body: Annotated[Any, Body()] = None) -> dict[str, Any]:
        tenant, role, name, expires_at = parse_key_request(c, body)
        _scope(c, tenant)
        return await p.keys.create_key(c, tenant=tenant, role=role, name=name, expires_at=expires_at)

    @app.get("/v1/keys")
    async def list_keys(p: PlatformDep, c: CallerDep, tenant: str | None = None,
                        include_revoked: bool = False) -> dict[str, Any]:
        return {"keys": await p.keys.keys(_scope(c, tenant), include_revoked=include_revoked),
                "roles": list(ROLE_NAMES)}

    @app.delete("/v1/keys/{key_id}")
    async def revoke_key(p: PlatformDep, c: CallerDep, key_id: KeyId) -> dict[str, Any]:
        if key_id == c.key_id:
            raise Conflict("a key cannot revoke itself (that would lock its holder out); rotate it with "
                           f"POST /v1/keys/{key_id}/rotate, or revoke it with another admin key")
        view, digest = await p.keys.revoke(c, key_id, _scope(c))
        p.forget_key(digest)
        return view

    @app.post("/v1/keys/{key_id}/rotate", status_code=201)
    async def rotate_key(p: PlatformDep, c: CallerDep, key_id: KeyId) -> JSONResponse:
        view, digest = await p.keys.rotate(c, key_id, _scope(c))
        p.forget_key(digest)
        return JSONResponse(view, status_code=201)

    @app.get("/v1/audit")
    async def audit(p: PlatformDep, c: CallerDep, since: str | None = None, tenant: str | None = None,
                    operation: Annotated[str | None, Query(max_length=64)] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        return {"entries": await entries(p.engine, tenant=_scope(c, tenant), since=_since(since), limit=limit,
                                         operation=operation)}
