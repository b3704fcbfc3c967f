"""The function registry (serve_app/catalog/registry.py) over the real database: the requests of a burst that
miss its cache together share one load, and a change's invalidation is never undone by a load from before it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from core.errors import NotFound
from tests.conftest import deploy


def test_a_burst_of_cache_misses_loads_a_function_once(api: httpx.Client, api_server: Any,
                                                       database_url: str) -> None:
    from core.db.engine import make_async_engine
    from core.db.functions import FunctionStore
    from serve_app.catalog.registry import Registry

    assert deploy(api, "reg-once", files={"main.py": "def handler(event, context):\n    return 1\n"}
                  ).status_code == 201
    built: list[str] = []

    async def resolve_in_bursts() -> tuple[set[int], set[int], list[Any]]:
        engine = make_async_engine(database_url, pool_size=2)
        registry = Registry(FunctionStore(engine), lambda sha, cfg: built.append(sha), api_server.platform.secrets)
        try:
            first = await asyncio.gather(*(registry.resolve("default", "reg-once") for _ in range(50)))
            registry.invalidate("default", "reg-once")
            second = await asyncio.gather(*(registry.resolve("default", "reg-once") for _ in range(20)))
            missing = await asyncio.gather(*(registry.resolve("default", "reg-none") for _ in range(5)),
                                           return_exceptions=True)
            return {rt.version for rt in first}, {rt.version for rt in second}, list(missing)
        finally:
            await engine.dispose()

    first, second, missing = asyncio.run(resolve_in_bursts())
    assert first == second == {1}
    assert len(built) == 2, built  # one load for the first burst, one after the invalidation
    assert all(isinstance(m, NotFound) for m in missing), missing  # each waiter gets the load's error


def test_a_load_from_before_an_invalidation_is_not_kept(api: httpx.Client, api_server: Any,
                                                        database_url: str) -> None:
    from core.db.engine import make_async_engine
    from core.db.functions import FunctionStore
    from serve_app.catalog.registry import Registry

    assert deploy(api, "reg-gen", files={"main.py": "def handler(event, context):\n    return 1\n"}
                  ).status_code == 201

    async def invalidated_while_loading() -> bool:
        engine = make_async_engine(database_url, pool_size=2)
        registry = Registry(FunctionStore(engine), lambda sha, cfg: None, api_server.platform.secrets)
        try:
            loading = asyncio.ensure_future(registry.resolve("default", "reg-gen"))
            await asyncio.sleep(0)  # the load has started
            registry.invalidate("default", "reg-gen")  # a change committed meanwhile
            await loading
            return ("default", "reg-gen") in registry._active
        finally:
            await engine.dispose()

    assert asyncio.run(invalidated_while_loading()) is False
