"""Tenant quota routes: the operator sets any tenant's quotas; a tenant's admins read their own."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request

from core.errors import Forbidden, InvalidInput
from core.models import DEFAULT_NAMESPACE
from core.quotas import parse_overrides
from serve_app.http.access_routes import _scope, _tenant_name
from serve_app.http.dependencies import CallerDep, PlatformDep


def register(app: FastAPI) -> None:
    """Add the quota routes to the app."""

    @app.get("/v1/tenants/{name}/quotas")
    async def get_quotas(p: PlatformDep, c: CallerDep, name: str) -> dict[str, Any]:
        _scope(c, name)
        return await p.tenant_quotas(_tenant_name(name))

    @app.put("/v1/tenants/{name}/quotas")
    async def set_quotas(request: Request, p: PlatformDep, c: CallerDep, name: str) -> dict[str, Any]:
        _scope(c, name)  # another tenant's: 404, as if it did not exist
        if not c.is_operator:
            raise Forbidden(f"setting quotas needs the admin role of the {DEFAULT_NAMESPACE!r} tenant (the operator's "
                            f"key); this key is {c.role.name} of tenant {c.namespace!r}",
                            detail={"role_needed": f"admin of {DEFAULT_NAMESPACE}"})
        try:
            body = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"the body is not valid JSON: {exc}") from None
        return await p.set_tenant_quotas(c, _tenant_name(name), parse_overrides(body))
