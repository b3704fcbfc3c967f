"""The replica's runtime: engines, caches, the writer and the dispatcher, wired once per process."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from actors import handles
from analytics.lake import ParquetLake
from cluster.executor import check_handler, execute
from cluster.packages import runtime_env_for
from core.auth import hash_key
from core.bundles import BundleLimits, BundleStore, validate_and_repack
from core.db.engine import make_async_engine
from core.db.tables import ApiKey
from core.errors import HandlerCheckFailed, InvalidInput, Unauthorized
from core.models import FunctionConfig
from core.settings import Settings
from serve_app.dispatcher import Dispatcher, Pending
from serve_app.functions import FunctionStore, parse_config, parse_handler, parse_name
from serve_app.monitoring import MonitoringFeed
from serve_app.registry import FunctionRuntime, Registry
from serve_app.tasks import TaskStore
from serve_app.writer import GroupCommitWriter, TaskInsert, TaskResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the namespace their key belongs to."""

    namespace: str
    is_admin: bool


class Platform:
    """Everything the routes need; created inside the Serve replica (or a test process)."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.engine: AsyncEngine = make_async_engine(database_url)
        self.bundles = BundleStore(settings.home / "artifacts")
        self.limits = BundleLimits.from_settings(settings)
        self.functions = FunctionStore(self.engine)
        self.tasks = TaskStore(self.engine)
        self.registry = Registry(self.engine, self._build_remote)
        self.writer = GroupCommitWriter(self.engine, on_committed=self._committed)
        self.dispatcher = Dispatcher(self.writer)
        self._remotes: dict[tuple[str, float], Any] = {}
        self._keys: dict[str, tuple[Caller | None, float]] = {}
        self.result_listeners: list[Callable[[list[TaskResult]], None]] = []
        self.lake = ParquetLake(settings.lake_path)
        self.monitoring: MonitoringFeed | None = None
        self.detectors: list[Any] = []
        self.alerts: Any = None
        self.database_url = database_url
        self.started = False

    async def start(self) -> None:
        """Start background loops and recover tasks a previous run left open."""
        if self.started:
            return
        self.started = True
        self.detectors = await asyncio.to_thread(handles.detector_shards, self.database_url)
        self.alerts = await asyncio.to_thread(handles.alert_dispatcher, self.database_url, str(self.lake.root),
                                              self.settings.resolved_api_url)
        await asyncio.gather(*(d.stats.remote() for d in self.detectors))  # ready before we report healthy
        self.monitoring = MonitoringFeed(self.lake, flush_s=self.settings.lake_flush_s, detectors=self.detectors,
                                         shard_of=handles.shard_of)
        self.result_listeners.append(self.monitoring.on_results)
        self.writer.start()
        await self.recover()

    async def close(self) -> None:
        """Drain and stop."""
        await self.dispatcher.drain()
        await self.writer.close()
        if self.monitoring is not None:
            self.monitoring.close()
        await self.engine.dispose()

    # ---- auth -------------------------------------------------------------------------------
    async def authenticate(self, authorization: str | None) -> Caller:
        """Resolve a bearer key to its caller (cached for 5 s); Unauthorized otherwise."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' (the admin key is in "
                               "$CLOUDFN_HOME/admin.key)")
        digest = hash_key(authorization[7:].strip())
        now = time.monotonic()
        hit = self._keys.get(digest)
        if hit is None or hit[1] < now:
            async with self.engine.connect() as conn:
                row = (await conn.execute(select(ApiKey.namespace, ApiKey.is_admin).where(
                    ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))).first()
            hit = (Caller(row[0], row[1]) if row else None, now + 5.0)
            self._keys[digest] = hit
        if hit[0] is None:
            raise Unauthorized("wrong API key")
        return hit[0]

    # ---- deploy -----------------------------------------------------------------------------
    def _build_remote(self, sha256: str, cfg: FunctionConfig) -> Any:
        key = (sha256, cfg.cpus)
        remote = self._remotes.get(key)
        if remote is None:
            env = runtime_env_for(sha256, self.bundles.read)
            remote = self._remotes[key] = execute.options(runtime_env=env, num_cpus=cfg.cpus)
        return remote

    async def deploy(self, caller: Caller, *, name: str, archive: bytes, handler: str | None,
                     config_json: str | None) -> dict[str, Any]:
        """Validate, store, gate and activate a new version; nothing is written if any step fails."""
        name = parse_name(name)
        handler = parse_handler(handler)
        cfg = parse_config(config_json)
        bundle = await asyncio.to_thread(validate_and_repack, archive, handler, self.limits)
        await asyncio.to_thread(self.bundles.put, bundle)
        env = await asyncio.to_thread(runtime_env_for, bundle.sha256, self.bundles.read)
        failure = await check_handler.options(runtime_env=env).remote(
            f"check/{caller.namespace}/{name}/{bundle.sha256}", handler, cfg.model_dump(mode="json"))
        if failure is not None:
            raise HandlerCheckFailed(
                f"handler {handler!r} failed the activation check: {failure.get('type')}: {failure.get('message')}",
                detail={"handler_error": failure})
        out = await self.functions.add_version(caller.namespace, name, sha256=bundle.sha256, handler=handler,
                                               config=cfg, size_bytes=len(bundle.data))
        self.registry.invalidate(caller.namespace, name)
        return out

    async def set_state(self, caller: Caller, name: str, state: str) -> dict[str, Any]:
        """Activate or deactivate."""
        out = await self.functions.set_state(caller.namespace, name, state)
        self.registry.invalidate(caller.namespace, name)
        return out

    async def rollback(self, caller: Caller, name: str, version: int | None) -> dict[str, Any]:
        """Make an earlier version active again."""
        out = await self.functions.set_active_version(caller.namespace, name, version)
        self.registry.invalidate(caller.namespace, name)
        return out

    async def delete(self, caller: Caller, name: str) -> None:
        """Delete a function; free bundles nothing references any more."""
        orphans = await self.functions.delete(caller.namespace, name)
        self.registry.invalidate(caller.namespace, name)
        for sha in orphans:
            await asyncio.to_thread(self.bundles.delete, sha)

    # ---- invoke -----------------------------------------------------------------------------
    async def invoke(self, caller: Caller, name: str, body: bytes, *, version: int | None = None,
                     wait_s: float | None = None) -> tuple[dict[str, Any], bool]:
        """Accept an invocation (persisted before return); with wait_s, also wait for its record."""
        rt = await self.registry.resolve(caller.namespace, name, version)
        event_json = parse_event(body)
        self.dispatcher.admit(rt)
        task_id = str(uuid.uuid4())
        now = time.time()
        await self.writer.insert(TaskInsert(id=task_id, namespace=rt.namespace, function_id=rt.function_id,
                                            function_name=rt.name, version=rt.version,
                                            input_json=event_json.decode(), created_at=now))
        done = self.dispatcher.submit(Pending(task_id, rt, event_json, now))
        if wait_s:
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout=wait_s)
            except TimeoutError:
                return {"task_id": task_id, "status": "running"}, False
            return await self.tasks.get(caller.namespace, task_id), True
        return {"task_id": task_id, "status": "queued"}, False

    def _committed(self, results: list[TaskResult]) -> None:
        for listener in self.result_listeners:
            try:
                listener(results)
            except Exception:
                log.exception("result listener failed")

    async def recover(self) -> None:
        """Tasks left open by a previous run: queued ones run now, running ones failed as ExecutorLost."""
        async with self.engine.begin() as conn:
            lost = await conn.execute(text(
                "UPDATE tasks SET status = 'failed', finished_at = now(), error = CAST(:err AS jsonb) "
                "WHERE status = 'running' AND kind = 'function' RETURNING id"),
                {"err": json.dumps({"type": "ExecutorLost", "message": "the platform stopped while this task "
                                    "was running; it was not retried (max_retries = 0)", "stack": []})})
            n_lost = len(lost.all())
            queued = (await conn.execute(text(
                "SELECT id, namespace, function_name, version, input, extract(epoch from created_at) "
                "FROM tasks WHERE status = 'queued' AND kind = 'function' ORDER BY created_at"))).all()
        if n_lost:
            log.warning("marked %d tasks left running by a previous run as failed (ExecutorLost)", n_lost)
        for tid, ns, fname, ver, inp, created in queued:
            try:
                rt = await self.registry.resolve(ns, fname, ver, require_active=False)
            except Exception as exc:
                await self.writer.finish(TaskResult(tid, "failed", None, {
                    "type": "FunctionUnavailable", "message": str(exc), "stack": []}, None, None, time.time(), 1,
                    None))
                continue
            self.dispatcher.submit(Pending(tid, rt, json.dumps(inp).encode(), float(created)))

    async def healthy(self) -> dict[str, Any]:
        """Database and Ray reachability."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"database": "ok", "ray": "ok" if ray.is_initialized() else "down"}


def parse_event(body: bytes) -> bytes:
    """The invocation body must be JSON (empty means null)."""
    if not body.strip():
        return b"null"
    try:
        json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the invocation body is not valid JSON: {exc}") from None
    return body


__all__ = ["Caller", "FunctionRuntime", "Platform", "parse_event"]
