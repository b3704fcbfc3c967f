"""The FastAPI dependency providers: the replica's Platform (from the serving app's state) and the caller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from core.access import Caller, operation_of, require
from serve_app.platform import Platform


async def platform_of_scope(scope: Mapping[str, Any]) -> Platform:
    """The platform of the app serving this request (started on first use), from an ASGI scope."""
    p: Platform = scope["app"].state.platform
    if not p.started:
        await p.start()
    return p


async def platform_of(request: Request) -> Platform:
    """The same, for FastAPI dependencies."""
    return await platform_of_scope(request.scope)


async def caller_of(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    """Authenticate the request's bearer key and check its role against the route's operation (core.access)."""
    caller = await (await platform_of(request)).authenticate(authorization)
    route = request.scope.get("route")
    require(caller, operation_of(request.method, getattr(route, "path", "")))
    return caller


CallerDep = Annotated[Caller, Depends(caller_of)]
PlatformDep = Annotated[Platform, Depends(platform_of)]
