"""The Ray task that runs one invocation: a thin supervisor around the sandbox pool.

User code never runs in this Ray worker: `SandboxPool` runs it in a sandboxed child process (warm and
reused per version), measures it, and enforces the version's limits. `max_retries=0`: Ray must never
re-run an invocation behind the platform's back; retries are the platform's decision (and recorded).
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import stat
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import ray

from cluster.sandbox import InvocationContext, SandboxUnavailable, get_pool
from core.models import ExecutionOutcome, FunctionConfig

_configs: dict[str, FunctionConfig] = {}


def _config(key: str, config: dict[str, Any]) -> FunctionConfig:
    """Parse a version's config once per worker."""
    cfg = _configs.get(key)
    if cfg is None:
        cfg = _configs[key] = FunctionConfig.model_validate(config)
    return cfg


def _context(req: dict[str, Any], task_id: str, cfg: FunctionConfig, picked_up: float) -> InvocationContext:
    """The Lambda-style context of one invocation."""
    return InvocationContext(
        function_name=req["function"],
        function_version=str(req["version"]),
        aws_request_id=task_id,
        memory_limit_in_mb=cfg.memory_mb,
        invoked_function_arn=f"arn:cloudfn:local:{req['namespace']}:function:{req['function']}",
        log_group_name=f"/cloudfn/{req['namespace']}/{req['function']}",
        log_stream_name=f"{req['version']}/{task_id}",
        deadline_epoch=picked_up + cfg.timeout_s,
    )


def _as_dict(out: ExecutionOutcome, picked_up: float, input_bytes: int) -> dict[str, Any]:
    """An outcome as the plain dict the dispatcher reads (the output's JSON as the child sent it, not re-encoded)."""
    output_json = out.output_json
    if output_json is None and out.status.value == "succeeded":
        output_json = json.dumps(out.output)
    return {
        "status": out.status.value,
        "output_json": output_json,
        "error": out.error,
        "logs": out.logs,
        "picked_up_at": picked_up,
        "started_at": out.started_at or picked_up,
        "finished_at": out.finished_at or time.time(),
        "duration_ms": out.duration_ms,
        "cpu_ms": out.cpu_ms,
        "cpu_wait_ms": out.cpu_wait_ms,
        "handler_ms": out.handler_ms,
        "peak_memory_mb": out.peak_memory_mb,
        "cold_start": out.cold_start,
        "input_bytes": out.input_bytes or input_bytes,
        "output_bytes": out.output_bytes,
        "extra": out.extra,
        "node": this_node(),
    }


@functools.cache
def this_node() -> str | None:
    """The id of the Ray node this worker runs on (None outside Ray)."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


@ray.remote(max_retries=0, num_cpus=0.25)
def execute(common: dict[str, Any], items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Ray entry point (runs in a worker whose runtime_env is the version's bundle): one or more invocations
    of one version, one after another in its warm sandbox, each measured and limited on its own.

    The dispatcher sends more than one only for a version whose recent executions were short, so that a
    batch ends within milliseconds; `common` holds what the invocations share, `items` (task id, event)."""
    return run_batch(common, items, Path.cwd())


def run_batch(common: dict[str, Any], items: list[tuple[str, bytes]], code_dir: Path) -> list[dict[str, Any]]:
    """Run a batch's invocations one after another from `code_dir`, in one warm child (none: a warm-up)."""
    if not items:
        return []
    picked_up = time.time()
    cfg = _config(common["key"], common["config"])
    calls = [(event, _context(common, task_id, cfg, picked_up)) for task_id, event in items]
    outs = get_pool().invoke_many(key=common["key"], code_dir=code_dir, handler=common["handler"], config=cfg,
                                  calls=calls)
    return [_as_dict(out, picked_up, len(event)) for out, (_, event) in zip(outs, items, strict=True)]


def bundles_root() -> Path:
    """Where bundles are extracted on this node (0700, ours)."""
    return Path(tempfile.gettempdir()) / f"cloudfn-bundles-{os.getuid()}"


def unpacked(sha256: str, package: bytes) -> Path:
    """A bundle extracted on this node, once (content-addressed; the bundle was validated and repacked at
    deploy, so its member names are safe)."""
    root = bundles_root()
    target = root / sha256
    if not target.is_dir():
        private_dir(root)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".unpack-"))
        with zipfile.ZipFile(io.BytesIO(package)) as z:
            z.extractall(staging)
        try:
            staging.rename(target)
        except OSError:  # another worker got there first
            shutil.rmtree(staging, ignore_errors=True)
    return target


def private_dir(path: Path) -> None:
    """Create `path` 0700, or check that it is already a directory of ours: what is unpacked here is copied
    into functions' sandboxes, so it must never live in a directory someone else made (e.g. under /tmp)."""
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{path} is not a directory owned by uid {os.geteuid()}")
    os.chmod(path, 0o700)


@ray.remote(max_retries=0, num_cpus=0.25)
def execute_package(package: bytes, sha256: str, common: dict[str, Any],
                    items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """`execute` in a worker without the version's runtime_env, the bundle extracted from `package`: runs a
    new version's first invocations while the version's own workers start (a Ray worker start is ~1 s)."""
    return run_batch(common, items, unpacked(sha256, package))


@ray.remote(max_retries=0, num_cpus=0)
def check_package(package: bytes, sha256: str, handler: str, config: dict[str, Any],
                  key: str) -> dict[str, Any] | None:
    """Activation gate, in any warm worker: None if the handler imports (in a fresh jail, as `key`'s own uid)
    and resolves to a valid callable, else the failure ({"type": "SandboxUnavailable"} when the jail cannot
    be applied)."""
    try:
        return get_pool().check_handler(key=key, code_dir=unpacked(sha256, package), handler=handler,
                                        config=FunctionConfig.model_validate(config))
    except SandboxUnavailable as exc:
        return {"type": "SandboxUnavailable", "message": f"the jail cannot be applied: {exc}", "stack": []}


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class WarmExecutor:
    """A version's express lane: an actor in the version's runtime_env that runs batches like `execute`.

    An actor call goes straight to its worker, while a Ray task needs a worker lease from the raylet for each
    call when a version is invoked one call at a time (bench: task round trip ~1.7 ms, actor ~0.8 ms on a
    quiet host; more on a busy one). It reserves no CPU (it runs one short call at a time)."""

    def run(self, common: dict[str, Any], items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """Run one batch (none: a readiness probe)."""
        return run_batch(common, items, Path.cwd())


HOST_CONCURRENCY = 64  # calls one shared warm host runs at once (each in its own thread, each in its own child)


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0, max_concurrency=HOST_CONCURRENCY)  # type: ignore[call-overload]
class WarmHost:
    """A shared warm host: one of a few actors per replica (one per core), without a runtime_env, holding the
    warm sandboxed children of many versions (the unit of warmth is the child, not a worker per version).

    A version's code reaches it as its bundle, the same ZIP its runtime_env's working_dir is made of (its
    dependencies vendored into it at deploy), extracted once per node and copied into the version's own
    read-only code dir, from which each child starts in a fresh jail as the version's own uid. Calls run in
    threads; each call uses its own child, so a burst runs in parallel. It reserves no CPU: the children's
    cgroups bound what they use."""

    def __init__(self) -> None:
        get_pool("warm_host")
        self.bundles = Bundles()

    def run(self, sha256: str, box: list[Any] | None, common: dict[str, Any],
            items: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """Run one batch of a version (its bundle: `box[0]`, an object ref fetched only if not yet extracted;
        None once a call of the version has answered here)."""
        return run_batch(common, items, self.bundles.path(sha256, box))

    def cancel(self, task_id: str) -> bool:
        """Kill the child running that invocation (it ends `cancelled`); False if it runs nowhere here."""
        return get_pool().cancel(task_id)

    def prewarm(self, sha256: str, box: list[Any], common: dict[str, Any], count: int) -> int:
        """Have `count` warm children of a version ready here (at its activation); how many were started."""
        return get_pool().prewarm(key=common["key"], code_dir=self.bundles.path(sha256, box),
                                  handler=common["handler"], config=_config(common["key"], common["config"]),
                                  count=count)

    def ping(self) -> int:
        """Liveness: this host's pid."""
        return os.getpid()


class Bundles:
    """The versions' bundles a warm host was sent: extracted on its node, their object refs kept so that a
    bundle removed from the node is fetched again even when a call comes without its ref."""

    def __init__(self) -> None:
        self.refs: dict[str, Any] = {}  # sha256 -> object ref of the bundle's bytes

    def path(self, sha256: str, box: list[Any] | None) -> Path:
        """The version's extracted bundle, fetched from the object store if not on this node (LookupError: not
        here and never sent; the platform then replaces the host, and the new one is sent the ref)."""
        if box is not None:
            self.refs.setdefault(sha256, box[0])
        target = bundles_root() / sha256
        if target.is_dir():
            return target
        ref = self.refs.get(sha256)
        if ref is None:
            raise LookupError(f"bundle {sha256[:12]} is not on this node and its object ref was never sent here")
        return unpacked(sha256, ray.get(ref))
