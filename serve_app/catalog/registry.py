"""The replica's cache of active function versions, each with its Ray task options built once. A change made on
any replica is announced at its commit (core.db.functions.CATALOG_CHANNEL) and forgotten here; with several
replicas an entry is also reloaded after MAX_AGE_S, in case a notice was lost while the listener reconnected."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from core.db.functions import FunctionStore
from core.errors import Conflict
from core.models import FunctionConfig
from core.secrets import SecretBox
from serve_app.catalog.destination_config import executor_config, unseal

SEALED_KEYS = ("env_sealed", "env_names")
MAX_AGE_S = 5.0


def _env_id(env: dict[str, str]) -> str:
    """A short digest of an env (so that a changed secret starts a fresh sandbox)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:12] if env else "noenv"


@dataclass
class FunctionRuntime:
    """What the hot path needs to invoke one function version."""

    namespace: str
    name: str
    function_id: int
    state: str
    version: int
    sha256: str
    handler: str
    config: FunctionConfig
    config_dict: dict[str, Any]
    remote: Any = field(default=None, repr=False)  # a TaskRunner: Ray tasks in this version's runtime_env
    env_id: str = ""
    loaded_at: float = field(default_factory=time.monotonic, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Identity of the version (and its env) for warm-sandbox reuse: never shared across versions,
        functions, or env changes."""
        return f"{self.namespace}/{self.name}/{self.version}/{self.sha256}/{self.env_id}"


class Registry:
    """Resolves (namespace, name[, version]) to a FunctionRuntime; invalidated on every change."""

    def __init__(self, functions: FunctionStore, build_remote: Any, secrets: SecretBox, *,
                 max_age_s: float | None = None) -> None:
        self.functions = functions
        self.secrets = secrets
        self.max_age_s = max_age_s  # None: entries live until invalidated (the only replica makes every change)
        self.build_remote = build_remote  # (sha256, FunctionConfig) -> TaskRunner of the version
        self._active: dict[tuple[str, str], FunctionRuntime] = {}
        self._versions: dict[tuple[str, str, int], FunctionRuntime] = {}
        # loads in flight: the requests of a burst that miss the cache together share one load
        self._loading: dict[tuple[str, str, int | None], asyncio.Task[FunctionRuntime]] = {}
        self._changes: dict[tuple[str, str], int] = {}  # invalidations per function: a load from before one is not kept

    def invalidate(self, namespace: str, name: str) -> None:
        """Forget a function (after deploy, (de)activate, delete, rollback, env change)."""
        self._active.pop((namespace, name), None)
        for k in [k for k in self._versions if k[:2] == (namespace, name)]:
            self._versions.pop(k, None)
        for loading in [k for k in self._loading if k[:2] == (namespace, name)]:
            self._loading.pop(loading, None)  # requests from now on load again
        self._changes[(namespace, name)] = self._changes.get((namespace, name), 0) + 1

    async def resolve(self, namespace: str, name: str, version: int | None = None,
                      *, require_active: bool = True) -> FunctionRuntime:
        """The runtime for the active (or a given) version; NotFound / Conflict otherwise."""
        rt = self._active.get((namespace, name))
        if rt is not None and self.max_age_s is not None and time.monotonic() - rt.loaded_at > self.max_age_s:
            rt = None
        if rt is None:
            seen = self._changes.get((namespace, name), 0)
            rt = await self._shared_load(namespace, name, None)
            if self._changes.get((namespace, name), 0) == seen:
                self._active[(namespace, name)] = rt
        if require_active and rt.state != "active":
            raise Conflict(f"function {name!r} is inactive; activate it first (cloudfn activate {name})")
        if version is None or version == rt.version:
            return rt
        vkey = (namespace, name, version)
        vrt = self._versions.get(vkey)
        if vrt is None:
            seen = self._changes.get((namespace, name), 0)
            vrt = await self._shared_load(namespace, name, version)
            if self._changes.get((namespace, name), 0) == seen:
                self._versions[vkey] = vrt
        return vrt

    async def _shared_load(self, namespace: str, name: str, version: int | None) -> FunctionRuntime:
        """One load per (function, version) at a time, in a task of its own (a request cancelled meanwhile does not
        cancel it); every request waiting for it gets its result or its error."""
        key = (namespace, name, version)
        task = self._loading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(namespace, name, version))
            self._loading[key] = task
            task.add_done_callback(lambda done: self._loaded(key, done))
        return await asyncio.shield(task)

    def _loaded(self, key: tuple[str, str, int | None], task: asyncio.Task[FunctionRuntime]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone

    async def _load(self, namespace: str, name: str, version: int | None) -> FunctionRuntime:
        fn, ver = await self.functions.runtime_rows(namespace, name, version)
        stored = unseal({k: v for k, v in ver.config.items() if k not in SEALED_KEYS}, self.secrets)
        env = {**self.secrets.open(ver.config.get("env_sealed")), **self.secrets.open(fn.env_encrypted)}
        cfg = FunctionConfig.model_validate({**stored, "env": env})
        rt = FunctionRuntime(namespace, name, fn.id, fn.state, ver.version, ver.sha256, ver.handler, cfg,
                             executor_config(cfg), env_id=_env_id(env))
        rt.remote = self.build_remote(ver.sha256, cfg)
        return rt
