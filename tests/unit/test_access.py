"""The role table: every route of the app is in it, every operation has a role, and `require` compares them."""

from __future__ import annotations

from typing import Any, cast

import pytest
from fastapi.routing import APIRoute

from core.access import OPERATIONS, ROUTES, UNLISTED, Caller, Role, operation_of, require
from core.errors import Forbidden
from serve_app.platform import KEY_CACHE_S

OPEN_ROUTES = {("GET", "/healthz")}


def app_routes() -> set[tuple[str, str]]:
    from serve_app.app import create_app

    no_platform = cast(Any, None)  # listing routes never reaches the platform
    return {(m, r.path) for r in create_app(no_platform).routes if isinstance(r, APIRoute) for m in r.methods}


def test_every_route_of_the_app_has_an_operation_and_every_operation_a_role() -> None:
    routes = app_routes() - OPEN_ROUTES
    assert len(routes) >= 35
    missing = sorted(r for r in routes if r not in ROUTES)
    assert not missing, f"add these routes to core.access.ROUTES: {missing}"
    assert not sorted(op for op in ROUTES.values() if op not in OPERATIONS)


def test_roles_are_ordered_and_require_names_the_role_needed() -> None:
    viewer = Caller("team-a", Role.viewer, 7, "dash")
    require(viewer, "functions.read")
    with pytest.raises(Forbidden) as err:
        require(viewer, "functions.deploy")
    assert "developer" in err.value.message and err.value.detail["role_needed"] == "developer"
    with pytest.raises(Forbidden) as err:
        require(viewer, operation_of("POST", "/v1/functions/{name}/invocations"))
    assert err.value.detail["role_needed"] == "invoker"
    invoker = Caller("team-a", Role.invoker, 8, "ci")
    require(invoker, "functions.invoke")
    require(invoker, "tasks.read")
    with pytest.raises(Forbidden):
        require(invoker, "functions.deploy")
    developer = Caller("team-a", Role.developer, 9, "dev")
    for op in ("functions.deploy", "functions.delete", "rules.write", "pipelines.write", "functions.env"):
        require(developer, op)
    for op in ("keys.write", "keys.read", "audit.read", "tenants.write"):
        with pytest.raises(Forbidden) as err:
            require(developer, op)
        assert err.value.detail["role_needed"] == "admin"
    admin = Caller("team-a", Role.admin, 10, "boss")
    for op in OPERATIONS:
        require(admin, op)
    assert admin.is_admin and not admin.is_operator and Caller("default", Role.admin).is_operator


def test_an_unlisted_route_is_for_admins_only() -> None:
    assert operation_of("GET", "/v1/something-new") == UNLISTED
    with pytest.raises(Forbidden):
        require(Caller("t", Role.developer), UNLISTED)
    require(Caller("t", Role.admin), UNLISTED)


def test_key_lookups_are_trusted_for_at_most_five_seconds() -> None:
    assert 0 < KEY_CACHE_S <= 5.0
