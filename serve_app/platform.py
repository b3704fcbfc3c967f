"""The replica's runtime: engines, caches, the writer and the dispatcher, wired once per process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import ray
from sqlalchemy.ext.asyncio import AsyncEngine

from actors import handles
from analytics.alerting.channel_config import ChannelSettings
from analytics.alerting.config import checked_alerting_config
from analytics.lakes import open_lake
from analytics.prometheus import PromRegistry
from cluster.deps import vendor_requirements
from cluster.executor import HOST_CONCURRENCY, WarmExecutor, WarmHost, check_package, execute, execute_package
from cluster.packages import runtime_env_for
from cluster.sandbox.mode import label as sandbox_label
from core.access import Caller, Role
from core.bundles import BundleLimits, BundleStore, validate_and_repack
from core.db.audit import Change, record_alone
from core.db.deliveries import DeliveryLog
from core.db.engine import make_async_engine
from core.db.functions import FunctionStore
from core.db.keys import KeyRow, KeyStore, hash_key
from core.db.leases import ReplicaLeases
from core.db.monitoring import MonitoringStore
from core.db.pipelines import PipelineStore
from core.db.quotas import QuotaStore
from core.db.tasks import METRIC_KEYS, TaskStore
from core.errors import (
    Conflict,
    HandlerCheckFailed,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    SandboxUnavailableError,
    Unauthorized,
)
from core.models import PYTHON_RUNTIME, FunctionConfig
from core.quotas import default_quotas
from core.secrets import SecretBox, check_env
from core.settings import Settings
from serve_app.accept.sandbox_gate import SandboxGate
from serve_app.catalog import destination_config
from serve_app.catalog.destination_config import executor_config
from serve_app.catalog.registry import MAX_AGE_S as REGISTRY_MAX_AGE_S
from serve_app.catalog.registry import FunctionRuntime, Registry
from serve_app.control.functions import parse_config, parse_handler, parse_name
from serve_app.control.pipelines import Pipelines, parse_steps
from serve_app.dispatch.dispatcher import Dispatcher, Pending, batch_common
from serve_app.dispatch.lanes import Lanes
from serve_app.dispatch.quotas import QUOTA_REFRESH_S, QuotaCollector, QuotaGate
from serve_app.dispatch.runners import Runner, TaskRunner, when_answered
from serve_app.dispatch.warm_hosts import WarmHosts
from serve_app.feed.destinations import Destinations
from serve_app.feed.monitoring import MonitoringFeed
from serve_app.replicas.membership import LEASE_S, RENEW_S, Membership, exit_replica, replica_name
from serve_app.replicas.notices import Notices
from serve_app.replicas.warmed import WarmedWaits
from serve_app.results.completions import Completions
from serve_app.results.task_reads import TaskReads
from serve_app.write.writer import GroupCommitWriter, TaskInsert, TaskResult

log = logging.getLogger(__name__)
WARM_HOST_SLOTS = 16  # calls of one version its warm host runs at once (a burst beyond goes to Ray tasks)
KEY_CACHE_S = 4.0  # how long a key lookup is trusted: a revocation reaches every replica within this
ORPHAN_SCAN_S = 5.0  # a hand-off whose notice was lost is picked up after this long
PREWARM_WAIT_S = 10.0  # how long an activation waits for its warm children
NEW_VERSION_CHILDREN = 1  # warm children started for an activated version whose function had no recent traffic
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")
LOST = {"type": "ExecutorLost", "message": "the API replica holding this task stopped while it was running; its "
        "executor was lost", "stack": []}


class Platform:
    """Everything the routes need; created inside the Serve replica (or a test process)."""

    def __init__(self, settings: Settings, database_url: str, *,
                 on_lapse: Callable[[], None] = exit_replica) -> None:
        self.settings = settings
        self.engine: AsyncEngine = make_async_engine(database_url)
        self.replica_id = uuid.uuid4().hex[:16]  # owner of the open tasks this process holds (core.db.leases)
        self.exclusive = (settings.api_replicas or 1) == 1  # the only API replica: nothing to share or hand off

        self.bundles = BundleStore(settings.home / "artifacts")
        self.limits = BundleLimits.from_settings(settings)
        self.functions = FunctionStore(self.engine)
        self.tasks = TaskStore(self.engine, sandbox_label())
        self.secrets = SecretBox(settings.home / "secrets.key")
        self.registry = Registry(self.functions, self._build_remote, self.secrets,
                                 max_age_s=None if self.exclusive else REGISTRY_MAX_AGE_S)
        self.completions = Completions()
        self.prom = PromRegistry()  # the replica's Prometheus figures, fed from the dispatcher, writer and feed
        self.writer = GroupCommitWriter(database_url, self.replica_id, notify=not self.exclusive,
                                        on_committed=self._committed, completions=self.completions,
                                        on_flush=self.prom.observe_flush)
        self.warmed = WarmedWaits()  # activations here waiting for the function's home to start its children
        self.notices = Notices(database_url, self.replica_id, on_ended=self.completions.publish,
                               on_handed=self._handed, on_changed=self._function_changed,
                               on_warmed=self.warmed.arrived, on_revoked=self.forget_key)
        self._taken: dict[str, None] = {}  # ids handed here and submitted (bounded): the orphan scan skips them
        self.reads = TaskReads(self.tasks, self.completions)
        self.quotas = QuotaGate(default_quotas(settings))
        self.membership = Membership(ReplicaLeases(self.engine, self.replica_id, LEASE_S, shared=not self.exclusive),
                                     exclusive=self.exclusive, on_lapse=on_lapse, on_view=self.quotas.set_replicas,
                                     name=replica_name)
        self.quota_store = QuotaStore(self.engine)
        self.prom.registry.register(QuotaCollector(self.quotas))
        self.dispatcher = Dispatcher(self.writer, self.quotas, on_result=self._task_ended,
                                     runner_for=self._runner_for, on_dispatch=self.prom.observe_dispatch)
        self.pipelines = Pipelines(PipelineStore(self.engine), self.registry, self.writer, self.dispatcher)
        self.destinations = Destinations(self.tasks, DeliveryLog(self.engine), self.registry,
                                         self._invoke_for_destination)
        self.lanes = Lanes(self._lane_actor, idle_s=max(float(settings.keep_warm_s), 1.0))
        hosts = settings.warm_hosts if settings.warm_hosts is not None else (os.cpu_count() or 2)
        self.hosts = WarmHosts(WarmHost.remote, hosts, WARM_HOST_SLOTS,  # type: ignore[attr-defined]
                               HOST_CONCURRENCY) if hosts else None
        self._packages: dict[str, list[Any]] = {}  # sha256 -> [object ref of the bundle] for the warm hosts
        self._prewarms: dict[tuple[str, str], asyncio.Task[None]] = {}  # functions whose children are starting
        self._idem: dict[tuple[str, str, str], asyncio.Future[str]] = {}
        self._pip = asyncio.Semaphore(1)
        self._last_pending: dict[str, Pending] = {}
        self._remotes: dict[tuple[str, float], TaskRunner] = {}  # each version's tasks in its own runtime_env
        self._bridges: dict[tuple[str, float], TaskRunner] = {}  # ... from the bundle's bytes until they start
        self._workers_up: set[tuple[str, float]] = set()  # versions whose own runtime_env worker answered
        self._workers_starting: set[tuple[str, float]] = set()
        self.keys = KeyStore(self.engine)
        self.monitoring_store = MonitoringStore(self.engine)  # anomalies, alert rules, alerts
        self._keys: dict[str, tuple[KeyRow | None, float]] = {}  # digest -> (live key or None, cached until)
        self.lake = open_lake(settings.lake_location)
        self.monitoring: MonitoringFeed | None = None
        self.detectors: list[Any] = []
        self.alerts: Any = None
        self.channels = ChannelSettings.from_settings(settings)
        self.alerting = checked_alerting_config(settings.alerting_config, self.channels)
        self.database_url = database_url
        self.sandbox = SandboxGate()
        self._startup_work: set[asyncio.Task[None]] = set()
        self._quota_refresh: asyncio.Task[None] | None = None
        self._claims: asyncio.Task[None] | None = None
        self.started = False

    async def start(self) -> None:
        """Start background loops and recover tasks a previous run left open."""
        if self.started:
            return
        self.started = True
        await self.sandbox.probe()
        resource = self.settings.monitor_resource
        self.detectors = await asyncio.to_thread(handles.detector_shards, self.database_url, resource=resource)
        self.alerts = await asyncio.to_thread(handles.alert_dispatcher, self.database_url, self.lake.uri,
                                              self.settings.resolved_api_url, self.channels, self.alerting,
                                              resource)
        # an actor left by an earlier run keeps its old settings
        await self.alerts.configure.remote(self.channels, self.alerting)
        await asyncio.gather(*(d.stats.remote() for d in self.detectors))  # ready before we report healthy
        self.monitoring = MonitoringFeed(self.lake, self.prom, flush_s=self.settings.lake_flush_s,
                                         detectors=self.detectors, shard_of=handles.shard_of,
                                         compacts=self.membership.leads)
        self.writer.start()
        if self.hosts is not None:
            self.hosts.start_all()
        await self.membership.start()
        if not self.exclusive:
            self.notices.start()
        await self.refresh_quotas()
        await self.recover()
        loop = asyncio.get_running_loop()
        self._quota_refresh = loop.create_task(self._refresh_quotas_loop())
        if not self.exclusive:
            self._claims = loop.create_task(self._claim_loop())
        self._background(self.destinations.recover(), "redelivering completion destinations")

    async def close(self) -> None:
        """Drain and stop."""
        for loop_task in (self._quota_refresh, self._claims):
            if loop_task is not None:
                loop_task.cancel()
        self.notices.close()
        await self.dispatcher.drain()
        await self.destinations.close()
        self.lanes.close()
        if self.hosts is not None:
            self.hosts.close()
        await self.writer.close()
        # nothing more is written for this replica: its lease ends now, so another claims what it still held
        await self.membership.close(release=self.started)
        if self.monitoring is not None:
            self.monitoring.close()
        await self.engine.dispose()

    # ---- auth -------------------------------------------------------------------------------
    async def authenticate(self, authorization: str | None) -> Caller:
        """Resolve a bearer key to its caller; Unauthorized for a missing, wrong, revoked or expired key.
        Lookups are cached for KEY_CACHE_S, so a key revoked on another replica is refused there within it."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' (the admin key is in "
                               "$CLOUDFN_HOME/admin.key)")
        digest = hash_key(authorization[7:].strip())
        now = time.monotonic()
        hit = self._keys.get(digest)
        if hit is None or hit[1] < now:
            hit = (await self.keys.lookup(digest), now + KEY_CACHE_S)
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[digest] = hit
        key = hit[0]
        if key is None:
            raise Unauthorized("wrong or revoked API key")
        if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
            raise Unauthorized(f"API key {key.name!r} expired at {key.expires_at.isoformat()}")
        return Caller(namespace=key.namespace, role=key.role, key_id=key.id, key_name=key.name)

    def forget_key(self, digest: str) -> None:
        """Drop a revoked key from this replica's cache (other replicas drop it when its revocation's notice
        reaches them, and within KEY_CACHE_S in any case)."""
        self._keys.pop(digest, None)

    async def audit(self, change: Change) -> None:
        """Record a change that has no single transaction of its own to join."""
        await record_alone(self.engine, change)

    # ---- quotas -----------------------------------------------------------------------------
    async def refresh_quotas(self) -> None:
        """Reload every tenant's overrides and its function and bundle counts into this replica's memory."""
        self.quotas.replace_overrides(await self.quota_store.all_overrides())
        self.quotas.set_storage(await self.quota_store.all_storage())

    async def _refresh_quotas_loop(self) -> None:
        while True:
            await asyncio.sleep(QUOTA_REFRESH_S)
            try:
                await self.refresh_quotas()
            except Exception as exc:  # the database may be restarting: keep the last known quotas
                log.warning("tenant quotas not reloaded: %r", exc)

    async def tenant_quotas(self, tenant: str) -> dict[str, Any]:
        """A tenant's quotas: its limits, which of them the operator set, and what it uses of each now."""
        overrides = await self.quota_store.overrides(tenant)
        limits = self.quotas.defaults.with_overrides(overrides)
        usage = self.quotas.usage(tenant)
        usage["functions"], usage["bundle_bytes"] = await self.quota_store.storage(tenant)
        return {"tenant": tenant, "quotas": limits.as_dict(), "overrides": overrides,
                "defaults": self.quotas.defaults.as_dict(), "usage": usage}

    async def set_tenant_quotas(self, caller: Caller, tenant: str, changes: dict[str, int | None]) -> dict[str, Any]:
        """Set some of a tenant's quotas (the operator's); they apply here at once, on other replicas within
        QUOTA_REFRESH_S."""
        overrides = await self.quota_store.set(caller, tenant, changes)
        self.quotas.set_overrides(tenant, overrides)
        self.dispatcher.quotas_changed(tenant)
        return await self.tenant_quotas(tenant)

    # ---- deploy -----------------------------------------------------------------------------
    def _build_remote(self, sha256: str, cfg: FunctionConfig) -> TaskRunner:
        key = (sha256, cfg.cpus)
        if self.hosts is not None and sha256 not in self._packages:
            self._packages[sha256] = [ray.put(self.bundles.read(sha256))]
        runner = self._remotes.get(key)
        if runner is None:
            env = runtime_env_for(sha256, self.bundles.read)
            runner = self._remotes[key] = TaskRunner(execute.options(runtime_env=env, num_cpus=cfg.cpus),
                                                     runtime_env=env)
        return runner

    async def deploy(self, caller: Caller, *, name: str, archive: bytes, handler: str | None,
                     config_json: str | None) -> dict[str, Any]:
        """Validate, store, gate and activate a new version; nothing is written if any step fails (a tenant's
        function or storage quota exceeded: QuotaExceeded)."""
        try:
            return await self._deploy(caller, name=name, archive=archive, handler=handler, config_json=config_json)
        except QuotaExceeded as exc:
            self.quotas.refused(caller.namespace, str(exc.detail["quota"]))
            raise

    async def _deploy(self, caller: Caller, *, name: str, archive: bytes, handler: str | None,
                      config_json: str | None) -> dict[str, Any]:
        name = parse_name(name)
        cfg = parse_config(config_json)
        handler = parse_handler(handler, cfg.runtime)
        await destination_config.check(cfg, caller.namespace, name, self.registry)
        await self.sandbox.require(network=cfg.network, runtime=cfg.runtime)
        check_env(cfg.env)
        bundle = await asyncio.to_thread(validate_and_repack, archive, handler, self.limits, cfg.runtime)
        if bundle.has_requirements and cfg.runtime == PYTHON_RUNTIME:
            async with self._pip:  # one pip at a time: each is CPU-heavy on a small host
                bundle = await asyncio.to_thread(vendor_requirements, bundle, handler, self.limits)
        quotas = self.quotas.limits(caller.namespace)
        await self.quota_store.check_deploy(caller.namespace, name, quotas, sha256=bundle.sha256,
                                            size_bytes=len(bundle.data))
        await asyncio.to_thread(self.bundles.put, bundle)
        package = ray.put(bundle.data)
        failure = await check_package.remote(package, bundle.sha256, handler, executor_config(cfg),
                                             f"check/{caller.namespace}/{name}/{bundle.sha256}")
        if failure is not None and failure.get("type") == "SandboxUnavailable":
            raise SandboxUnavailableError(str(failure.get("message")), detail={"reason": failure.get("message")})
        if failure is not None:
            raise HandlerCheckFailed(
                f"handler {handler!r} failed the activation check: {failure.get('type')}: {failure.get('message')}",
                detail={"handler_error": failure})
        stored = cfg.model_dump(mode="json", exclude={"env"})
        stored.update(env={}, env_sealed=self.secrets.seal(cfg.env), env_names=sorted(cfg.env))
        stored = destination_config.seal(stored, self.secrets)
        await self._start_workers(bundle.sha256, cfg, package,
                                  spills=self.dispatcher.recent_peak(caller.namespace, name) > WARM_HOST_SLOTS)
        return await self._activating(caller.namespace, name, self.functions.add_version(
            caller.namespace, name, sha256=bundle.sha256, handler=handler, config=stored,
            size_bytes=len(bundle.data), change=Change(caller, "functions.deploy", f"function/{name}"), quotas=quotas))

    async def _activating(self, namespace: str, name: str,
                          change: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
        """Commit a change that activates a version, then answer once its warm children are started: here if
        this replica is the function's home, else when the home says so (or after PREWARM_WAIT_S)."""
        waiter = self.warmed.expect(namespace, name) if self.hosts is not None and not self.exclusive else None
        try:
            out = await change
            self.registry.invalidate(namespace, name)
            if waiter is None or self.membership.home(namespace, name) == self.replica_id:
                await self._prewarm(namespace, name)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), PREWARM_WAIT_S)
            return out
        finally:
            if waiter is not None:
                self.warmed.forget(namespace, name, waiter)

    async def _start_workers(self, sha256: str, cfg: FunctionConfig, package: Any, *, spills: bool) -> None:
        """Upload the version's runtime_env and start its own worker (an empty batch in it) without waiting for
        it; until it answers, invocations run through a bridge (`execute_package`). With warm hosts, whose
        children serve the version from the start, the worker only takes calls beyond the host's slots: it is
        started ahead only if the function's recent traffic spilled (`spills`), else on the first overflow
        (`_runner_for`): starting one costs about a second of CPU, which a new function's first burst would wait
        on, on a small host."""
        key = (sha256, cfg.cpus)
        known = key in self._remotes  # this content already ran here: its workers exist or are starting
        runner = await asyncio.to_thread(self._build_remote, sha256, cfg)
        if self.hosts is not None:
            if spills:
                self._start_own_worker(key, runner)
            return
        if known or key in self._bridges:
            return
        self._bridges[key] = TaskRunner(execute_package.options(num_cpus=cfg.cpus), (package, sha256))

        def started() -> None:
            self._bridges.pop(key, None)  # the version's own worker is up: the bridge is no longer needed

        def not_started(exc: BaseException | None) -> None:
            log.warning("version %s: its runtime_env worker did not start (%r); its invocations keep running "
                        "through the bridge", sha256[:12], exc)

        when_answered(runner.submit({}, []), started, not_started)

    def _function_changed(self, namespace: str, name: str) -> None:
        """A function changed on some replica (its notice): forget the cached version; with several replicas, if
        this one is its home, start its active version's warm children and say so (the change may have been
        made on another replica, which waits for that before it answers)."""
        self.registry.invalidate(namespace, name)
        if self.hosts is not None and not self.exclusive and self.membership.home(namespace, name) == self.replica_id:
            self._background(self._warm_and_tell(namespace, name), f"warm children of {namespace}/{name}")

    async def _warm_and_tell(self, namespace: str, name: str) -> None:
        """As the function's home: start its active version's warm children, then tell the replica that made
        the change (it answers its caller then)."""
        await self._prewarm(namespace, name)
        await self.functions.announce_warmed(namespace, name)

    async def _prewarm(self, namespace: str, name: str) -> None:
        """Start a just-activated version's warm children before its first burst, on its host here if this
        replica is the function's home: as many as the function's calls that ran at once lately (its previous
        version's traffic), else NEW_VERSION_CHILDREN, so that a new function's first calls, which tell the
        dispatcher its speed, run at once. Bounded by PREWARM_WAIT_S; a failure only costs cold starts. The
        activation and its notice share one start (whichever comes first)."""
        if self.hosts is None or self.membership.home(namespace, name) != self.replica_id:
            return
        running = self._prewarms.get((namespace, name))
        if running is None or running.done():
            running = asyncio.get_running_loop().create_task(self._start_warm(namespace, name))
            self._prewarms[(namespace, name)] = running
            running.add_done_callback(lambda _: self._prewarms.pop((namespace, name), None))
        await asyncio.shield(running)

    async def _start_warm(self, namespace: str, name: str) -> None:
        assert self.hosts is not None
        try:
            count = self.dispatcher.recent_peak(namespace, name) or NEW_VERSION_CHILDREN
            rt = await self.registry.resolve(namespace, name)
            box = self._packages.get(rt.sha256)
            if box is None:
                return
            await asyncio.wait_for(self.hosts.prewarm((rt.sha256, rt.config.cpus), box, batch_common(rt), count),
                                   PREWARM_WAIT_S)
        except (NotFound, Conflict):  # deleted or deactivated meanwhile
            return
        except Exception as exc:
            log.warning("function %s/%s: warm children not started ahead of demand: %r", namespace, name, exc)

    def _start_own_worker(self, key: tuple[str, float], runner: TaskRunner) -> None:
        """Start a version's own runtime_env worker (an empty batch) once, without waiting; when it answers,
        the version's overflow beyond its host's slots may go to Ray tasks in its runtime_env."""
        if key in self._workers_up or key in self._workers_starting:
            return
        self._workers_starting.add(key)

        def up() -> None:
            self._workers_starting.discard(key)
            self._workers_up.add(key)

        def not_up(exc: BaseException | None) -> None:
            self._workers_starting.discard(key)  # the next overflow tries again
            log.warning("version %s: its runtime_env worker did not start (%r)", key[0][:12], exc)

        when_answered(runner.submit({}, []), up, not_up)

    def _runner_for(self, rt: FunctionRuntime, short: bool, may_wait: bool) -> Runner | None:
        """Where a version's next batch runs: its shared warm host if it can take it, else its bridge while
        its own workers start, else (short and idle) its express lane, else Ray tasks in its runtime_env. With
        warm hosts, a fast version (its executions, or its previous version's, end within milliseconds) whose
        host is busy with its calls (`may_wait`) waits for a host slot (None) instead of spilling to Ray tasks:
        such a task may wait for a worker to start (~1 s each, one per concurrent task) while a slot frees within
        milliseconds, so a redeployed version's first burst runs at the steady rate. A slow version spills (its
        tasks may run on any node). The version's own worker is started here, at its first overflow (or at
        deploy, if its function's traffic spilled lately)."""
        key = (rt.sha256, rt.config.cpus)
        box = self._packages.get(rt.sha256)
        host = self.hosts.runner(key, box) if self.hosts is not None and box is not None else None
        if host is not None:
            return host
        if self.hosts is not None:
            if may_wait:
                return None
            self._start_own_worker(key, rt.remote)
        bridge = self._bridges.get(key)
        if bridge is not None:
            return bridge
        # express lanes (an actor per version) only without warm hosts: with them, a lane would be a second warm
        # worker for a version whose host is busy or starting
        lane = self.lanes.idle(key) if self.hosts is None and short and key in self._remotes else None
        return lane if lane is not None else rt.remote

    def _lane_actor(self, key: tuple[str, float]) -> Any:
        """A new express-lane actor in the version's runtime_env."""
        return WarmExecutor.options(runtime_env=self._remotes[key].runtime_env).remote()  # type: ignore[attr-defined]

    async def set_state(self, caller: Caller, name: str, state: str) -> dict[str, Any]:
        """Activate or deactivate."""
        op = "functions.activate" if state == "active" else "functions.deactivate"
        change = self.functions.set_state(caller.namespace, name, state, Change(caller, op, f"function/{name}"))
        if state == "active":
            return await self._activating(caller.namespace, name, change)
        out = await change
        self.registry.invalidate(caller.namespace, name)
        return out

    async def set_env(self, caller: Caller, name: str, env: object) -> dict[str, Any]:
        """Replace a function's own env variables/secrets (encrypted at rest); answer with the names only."""
        checked = check_env(env)
        await self.functions.set_env(caller.namespace, name, self.secrets.seal(checked),
                                     Change(caller, "functions.env", f"function/{name}",
                                            detail={"names": sorted(checked)}))
        self.registry.invalidate(caller.namespace, name)
        return {"function": name, "env": sorted(checked)}

    async def rollback(self, caller: Caller, name: str, version: int | None) -> dict[str, Any]:
        """Make an earlier version active again."""
        return await self._activating(caller.namespace, name, self.functions.set_active_version(
            caller.namespace, name, version, Change(caller, "functions.rollback", f"function/{name}")))

    async def delete(self, caller: Caller, name: str) -> None:
        """Delete a function; free bundles nothing references any more."""
        orphans = await self.functions.delete(caller.namespace, name, Change(caller, "functions.delete",
                                                                            f"function/{name}"))
        self.registry.invalidate(caller.namespace, name)
        for sha in orphans:
            await asyncio.to_thread(self.bundles.delete, sha)

    # ---- invoke -----------------------------------------------------------------------------
    async def invoke(self, caller: Caller, name: str, body: bytes, *, version: int | None = None,
                     wait_s: float | None = None, idempotency_key: str | None = None,
                     then: list[str] | None = None) -> tuple[dict[str, Any], bool]:
        """Accept an invocation (persisted before return); with wait_s, also wait for its record."""
        rt = await self.registry.resolve(caller.namespace, name, version)
        await self.sandbox.require(network=rt.config.network, runtime=rt.config.runtime)
        event_json = parse_event(body)
        if then:
            plan = [{"function": name, "version": version}] + parse_steps(then)
            label = "chain:" + ">".join(s["function"] for s in plan)
            return await self._start_run(caller, label, plan, event_json, wait_s, idempotency_key)
        home = self.membership.home(rt.namespace, rt.name)
        if home != self.replica_id:
            return await self._hand_off(caller, rt, event_json, home, wait_s, idempotency_key)
        self.dispatcher.admit(rt)
        committed: asyncio.Future[None] | None = None
        try:
            if idempotency_key:
                task_id, fresh = await self._idempotent_insert(caller, rt, event_json, idempotency_key)
                if not fresh:
                    self.dispatcher.release(rt)
                    return await self._existing(caller, task_id, wait_s)
            else:
                task_id = str(uuid.uuid4())
                created = time.time()
                row = TaskInsert(id=task_id, namespace=rt.namespace, function_id=rt.function_id,
                                 function_name=rt.name, version=rt.version, input_json=event_json.decode(),
                                 created_at=created)
                if wait_s:
                    # the caller is answered only after the row (and then the result) is committed, so the
                    # execution may start while the row is being written: one commit less on the critical path
                    committed = self.writer.insert_nowait(row)
                else:
                    await self.writer.insert(row)  # a 202 promises a committed row
        except BaseException:
            self.dispatcher.release(rt)
            raise
        pending = Pending(task_id, rt, event_json, created if not idempotency_key else time.time())
        done = self.dispatcher.submit(pending, reserved=True)
        if committed is not None:
            await committed  # if the row could not be written, the caller gets the error (nothing was promised)
        if wait_s:
            self._last_pending[task_id] = pending
        return await self._answer(caller, task_id, done, wait_s)

    async def _hand_off(self, caller: Caller, rt: FunctionRuntime, event_json: bytes, home: str,
                        wait_s: float | None, idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
        """Accept an invocation of a function another replica dispatches: commit its row owned by that replica
        (the commit notifies it); with wait_s, wait for its end here."""
        self.quotas.admit(rt.namespace)  # the tenant's rate and queued quotas apply where it is accepted
        try:
            if idempotency_key:
                task_id, fresh = await self._idempotent_insert(caller, rt, event_json, idempotency_key, owner=home)
                if not fresh:
                    return await self._existing(caller, task_id, wait_s)
            else:
                task_id = str(uuid.uuid4())
                await self.writer.insert(TaskInsert(
                    id=task_id, namespace=rt.namespace, function_id=rt.function_id, function_name=rt.name,
                    version=rt.version, input_json=event_json.decode(), created_at=time.time(), owner=home))
        except BaseException:
            self.quotas.unadmit(rt.namespace)
            raise
        self.quotas.load(rt.namespace).queued -= 1  # queued (and counted) at its home
        if wait_s:
            return await self._wait_elsewhere(caller, task_id, wait_s)
        return {"task_id": task_id, "status": "queued"}, False

    async def _wait_elsewhere(self, caller: Caller, task_id: str, wait_s: float) -> tuple[dict[str, Any], bool]:
        """Wait for a task another replica holds (its end is announced on ENDED_CHANNEL)."""
        rec = await self.reads.wait(caller.namespace, task_id, wait_s)
        if rec["status"] in TERMINAL:
            return rec, True
        return {"task_id": task_id, "status": rec["status"]}, False

    async def invoke_pipeline(self, caller: Caller, name: str, body: bytes, *, wait_s: float | None = None,
                              idempotency_key: str | None = None) -> tuple[dict[str, Any], bool]:
        """Start a run of a named pipeline."""
        await self.sandbox.require()
        pipe = await self.pipelines.get(caller, name)
        return await self._start_run(caller, name, pipe["steps"], parse_event(body), wait_s, idempotency_key)

    async def _start_run(self, caller: Caller, label: str, plan: list[dict[str, Any]], event_json: bytes,
                         wait_s: float | None, idempotency_key: str | None) -> tuple[dict[str, Any], bool]:
        if idempotency_key:
            found = await self.tasks.keyed(caller.namespace, label, idempotency_key)
            if found:
                return await self._existing(caller, found, wait_s)
        self.quotas.admit(caller.namespace)  # a run is an invocation: the rate and queued quotas apply
        try:
            run_id, done = await self.pipelines.start(caller, label, plan, event_json, idempotency_key)
        except BaseException:
            self.quotas.unadmit(caller.namespace)
            raise
        self.quotas.load(caller.namespace).queued -= 1  # its first step is queued (and counted) as itself
        return await self._answer(caller, run_id, done, wait_s, accepted="running")

    async def _answer(self, caller: Caller, task_id: str, done: asyncio.Future[TaskResult], wait_s: float | None,
                      accepted: str = "queued") -> tuple[dict[str, Any], bool]:
        if wait_s:
            ended, _ = await asyncio.wait((done,), timeout=wait_s)  # the task goes on if the wait times out
            if not ended:
                self._last_pending.pop(task_id, None)
                return {"task_id": task_id, "status": "running"}, False
            result = done.result()
            p = self._last_pending.pop(task_id, None)
            if p is not None and result.metrics is not None and result.attempt == 1:
                return record_from_result(p, result), True  # what was just committed; no re-read
            return await self.tasks.get(caller.namespace, task_id), True
        return {"task_id": task_id, "status": accepted}, False

    async def _existing(self, caller: Caller, task_id: str, wait_s: float | None) -> tuple[dict[str, Any], bool]:
        """The answer to a repeated Idempotency-Key: the original task, never a second execution."""
        p = self.dispatcher.inflight(task_id)
        run = self.pipelines.runs.get(task_id)
        fut = p.done if p is not None else (run.done if run is not None else None)
        if fut is not None and wait_s:
            return await self._answer(caller, task_id, fut, wait_s)
        if wait_s and fut is None and not self.exclusive:  # it may be held by another replica: wait for its end
            rec = await self.reads.wait(caller.namespace, task_id, wait_s)
        else:
            rec = await self.tasks.get(caller.namespace, task_id)
        if wait_s and rec["status"] in TERMINAL:
            return rec, True
        return {"task_id": task_id, "status": rec["status"], "idempotent_replay": True}, False

    async def _idempotent_insert(self, caller: Caller, rt: FunctionRuntime, event_json: bytes,
                                 key: str, owner: str | None = None) -> tuple[str, bool]:
        """Insert-or-find by (namespace, function, key) within 24 h; concurrent duplicates share one answer."""
        if len(key) > 200:
            raise InvalidInput("Idempotency-Key must be at most 200 characters")
        ikey = (caller.namespace, rt.name, key)
        fut = self._idem.get(ikey)
        if fut is not None:
            return await asyncio.shield(fut), False
        fut = self._idem[ikey] = asyncio.get_running_loop().create_future()
        try:
            task_id, fresh = await self._insert_or_find(rt, event_json, key, owner or self.replica_id)
        except BaseException as exc:
            self._idem.pop(ikey, None)
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        fut.set_result(task_id)
        if len(self._idem) > 10_000:
            for k in list(self._idem)[:5_000]:
                self._idem.pop(k, None)
        return task_id, fresh

    async def _insert_or_find(self, rt: FunctionRuntime, event_json: bytes, key: str,
                              owner: str) -> tuple[str, bool]:
        return await self.tasks.insert_keyed({
            "id": str(uuid.uuid4()), "namespace": rt.namespace, "function_id": rt.function_id,
            "function_name": rt.name, "version": rt.version, "input": event_json.decode(), "key": key,
            "owner": owner})

    async def cancel(self, caller: Caller, task_id: str) -> dict[str, Any]:
        """Stop a queued or running task (or pipeline run); return its record once stopped."""
        rec = await self.tasks.get(caller.namespace, task_id)
        if rec["status"] in ("succeeded", "failed", "timed_out", "cancelled"):
            raise Conflict(f"task {task_id} already ended as {rec['status']}")
        targets = [task_id]
        if rec.get("kind") == "pipeline":
            targets = [s["task_id"] for s in rec.get("steps", []) if s["status"] in ("queued", "running")]
        waits = []
        for tid in targets:
            p = self.dispatcher.inflight(tid)
            if p is not None and await self.dispatcher.cancel(tid) and p.done is not None:
                waits.append(p.done)
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=10)
        run = self.pipelines.runs.get(task_id)
        if run is not None and waits:
            await asyncio.wait_for(asyncio.shield(run.done), timeout=10)
        else:
            # not held by this process (e.g. accepted before a restart and not yet recovered): end it in place
            ended = await self.tasks.cancel_open(task_id, {"type": "Cancelled", "message": "cancelled", "stack": []})
            self.completions.publish(ended)  # committed outside the writer: wake long-polls here
        await self.audit(Change(caller, "tasks.cancel", f"task/{task_id}"))
        return await self.tasks.get(caller.namespace, task_id)

    async def dead_letters(self, caller: Caller, function: str | None, limit: int) -> list[dict[str, Any]]:
        """Tasks that failed for good (retries exhausted), with their input."""
        return await self.tasks.dead_letters(caller.namespace, function=function, limit=limit)

    async def redrive(self, caller: Caller, task_id: str) -> dict[str, Any]:
        """Run a dead letter again, as its next attempt under the same task id."""
        t = await self.tasks.dead_letter(caller.namespace, task_id)
        rt = await self.registry.resolve(caller.namespace, t.function_name, t.version)
        moved = await self.tasks.requeue_dead_letter(t, Change(caller, "tasks.redrive", f"task/{task_id}"),
                                                     self.replica_id)
        self.dispatcher.submit(Pending(task_id, rt, json.dumps(t.input).encode(), time.time(), attempt=int(moved)))
        return {"task_id": task_id, "status": "queued", "attempt": int(moved)}

    def _background(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run work that must not hold up serving (start-up, warm children on a notice); a failure is logged."""
        def done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed: %r", what, task.exception())

        task = asyncio.get_running_loop().create_task(work)
        self._startup_work.add(task)
        task.add_done_callback(self._startup_work.discard)
        task.add_done_callback(done)

    def _task_ended(self, p: Pending, result: TaskResult) -> None:
        """Dispatcher callback once a task's end is committed: continue its pipeline, deliver its destination."""
        self.pipelines.on_result(p, result)
        self.destinations.task_ended(p, result)

    async def _invoke_for_destination(self, namespace: str, name: str, event_json: bytes, key: str) -> str:
        """Start a destination function's task (the ended task's record as its event); its id."""
        caller = Caller(namespace, Role.invoker, key_name="completion destination")
        record, _ = await self.invoke(caller, name, event_json, idempotency_key=key)
        return str(record["task_id"])

    def _committed(self, results: list[TaskResult]) -> None:
        """Feed committed results to monitoring (once started): never fails the writer's flush."""
        if self.monitoring is None:
            return
        try:
            self.monitoring.on_results(results)
        except Exception:
            log.exception("feeding results to monitoring failed")

    async def recover(self) -> None:
        """Take over open tasks whose replica is gone: at start, the sole replica takes every open task not its
        own (a previous process's); with several, only those whose owner's lease ran out (core.db.leases).
        Running ones are retried if allowed, else failed (ExecutorLost); queued ones run; open runs continue."""
        claimed = await self.membership.leases.claim(LOST, everyone=self.exclusive)
        if claimed.retried or claimed.failed:
            log.warning("recovery: %d running tasks requeued for retry, %d failed as ExecutorLost", claimed.retried,
                        claimed.failed)
        await self._submit_rows(claimed.queued)
        await self.pipelines.recover(claimed.runs)

    async def _claim_loop(self) -> None:
        """With several replicas: claim orphaned tasks as leases run out, and pick up hand-offs whose notice
        was lost."""
        scanned = time.monotonic()
        while True:
            await asyncio.sleep(RENEW_S)
            try:
                await self.recover()
                if time.monotonic() - scanned >= ORPHAN_SCAN_S:
                    scanned = time.monotonic()
                    ids = await self.membership.leases.queued_ids(ORPHAN_SCAN_S)
                    lost = [i for i in ids if i not in self._taken and self.dispatcher.inflight(i) is None]
                    if lost:
                        await self._submit_rows(await self.membership.leases.handed(lost))
            except Exception as exc:  # the database may be restarting: try again next round
                log.warning("claiming orphaned tasks failed: %r", exc)

    def _handed(self, ids: list[str]) -> None:
        """Another replica committed tasks for this one to dispatch."""
        self._background(self._take_handed(ids), "taking handed-over tasks")

    async def _take_handed(self, ids: list[str]) -> None:
        rows = await self.membership.leases.handed(ids)
        await self._submit_rows(rows)

    async def _submit_rows(self, rows: Sequence[Any]) -> None:
        """Queue claimed or handed-over task rows (QUEUED_COLUMNS) here; a version that cannot be resolved
        any more fails its task."""
        for tid, ns, fname, ver, inp, created, attempt, parent, step in rows:
            if self.dispatcher.inflight(tid) is not None:
                continue
            self._taken[tid] = None
            if len(self._taken) > 100_000:
                for k in list(self._taken)[:50_000]:
                    del self._taken[k]
            try:
                rt = await self.registry.resolve(ns, fname, ver, require_active=False)
            except Exception as exc:
                await self.writer.finish(TaskResult(tid, "failed", None, {
                    "type": "FunctionUnavailable", "message": str(exc), "stack": []}, None, None, time.time(),
                    attempt, None))
                continue
            self.dispatcher.submit(Pending(tid, rt, json.dumps(inp).encode(), float(created), attempt=attempt,
                                           parent_id=parent, step_index=step))

    async def healthy(self) -> dict[str, Any]:
        """Database and Ray reachability."""
        await self.tasks.ping()
        sandbox = self.sandbox.mode if self.sandbox.problem is None else f"unavailable: {self.sandbox.problem}"
        return {"database": "ok", "ray": "ok" if ray.is_initialized() else "down", "sandbox": sandbox}


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def record_from_result(p: Pending, r: TaskResult) -> dict[str, Any]:
    """The task record of a single-attempt invocation, built from its committed result (same shape as a GET)."""
    m = r.metrics or {}
    return {"task_id": p.task_id, "function": p.rt.name, "version": p.rt.version, "status": r.status,
            "output": None if r.output_json is None else json.loads(r.output_json), "error": r.error,
            "metrics": {k: m.get(k) for k in METRIC_KEYS}, "attempt": r.attempt, "namespace": p.rt.namespace,
            "kind": "function", "created_at": _iso(p.created_at), "started_at": _iso(r.started_at),
            "finished_at": _iso(r.finished_at), "sandbox": sandbox_label(), "node": m.get("node")}


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    """A JSON number as a float; one beyond a double's range (1e999) is refused, not read as infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond the range of a double")
    return value


def parse_event(body: bytes) -> bytes:
    """The invocation body must be JSON (empty means null)."""
    if not body.strip():
        return b"null"
    try:
        json.loads(body, parse_constant=_not_json, parse_float=_finite)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"the invocation body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("the invocation body is nested too deeply") from None
    return body


__all__ = ["Caller", "FunctionRuntime", "Platform", "parse_event"]
