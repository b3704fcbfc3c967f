"""Start a local Ray cluster for the platform, or join CLOUDFN_RAY_ADDRESS."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from core.settings import Settings

# Ray Serve's HAProxy ingress: ~10x the default proxy's throughput on 2 cores (ARCHITECTURE.md).
SERVE_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


@dataclass(frozen=True)
class RayInfo:
    """Where the cluster is."""

    address: str
    dashboard_url: str | None
    namespace: str
    temp_dir: str | None


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def instance_id(settings: Settings) -> str:
    """A short id unique to this CLOUDFN_HOME, so two instances never share Ray names or dirs."""
    return hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:10]


def ray_temp_dir(settings: Settings) -> Path:
    """Ray's temp dir: short (Unix socket paths), one per instance, inside a parent only we can enter (Ray
    makes its own temp dirs 0777, and a sandbox child must never reach a cached package or Ray's token)."""
    return private_parent(settings) / "r"


def private_parent(settings: Settings) -> Path:
    """/tmp/cfray-<instance>: created 0700 by us; refused if it is anything else (a planted dir or link)."""
    return Path("/tmp") / f"cfray-{instance_id(settings)}"


def ensure_private_parent(settings: Settings) -> Path:
    """Create (or check) the private parent of Ray's temp dir; raises PermissionError if it is not ours."""
    parent = private_parent(settings)
    parent.mkdir(mode=0o700, exist_ok=True)
    st = parent.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"{parent} is not a directory owned by uid {os.geteuid()}; remove it and retry")
    os.chmod(parent, 0o700)
    return parent


def haproxy_dir(settings: Settings) -> Path:
    """Where this instance's HAProxy keeps its config and sockets (Ray's default is shared by all instances);
    short, because HAProxy refuses socket paths over 97 bytes."""
    return private_parent(settings) / "h"


def haproxy_env(settings: Settings) -> dict[str, str]:
    """Per-instance HAProxy files and ports, so two platforms can run side by side on one host."""
    d = haproxy_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(d / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(d / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(d),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(d / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
    }


def kill_strays(settings: Settings) -> int:
    """Kill processes a previous run of this instance left behind (e.g. HAProxy after a SIGKILL)."""
    import psutil

    marker = str(haproxy_dir(settings))
    killed = 0
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if marker in cmd:
            try:
                proc.kill()
                killed += 1
            except psutil.Error:
                pass
    return killed


def start_or_join(settings: Settings, serve_env: Mapping[str, str] = SERVE_ENV) -> RayInfo:
    """Connect this process to Ray as the platform's driver; `serve_env` (the Serve config's runtime variables)
    goes into the environment first, where a variable already set wins."""
    namespace = f"cloudfn-{instance_id(settings)}"
    if ray.is_initialized():
        rctx = ray.get_runtime_context()
        return RayInfo(rctx.gcs_address, None, rctx.namespace, None)
    for k, v in serve_env.items():
        os.environ.setdefault(k, v)
    os.environ.update(haproxy_env(settings))
    if settings.ray_address:
        ctx: Any = ray.init(address=settings.ray_address, namespace=namespace, logging_level=logging.WARNING,
                       log_to_driver=False)
        return RayInfo(settings.ray_address, ctx.dashboard_url, namespace, None)
    ensure_private_parent(settings)
    temp = ray_temp_dir(settings)
    temp.mkdir(mode=0o700, exist_ok=True)
    dash_port = settings.ray_dashboard_port or free_port()
    idle_worker_ms = max(min(settings.idle_worker_s, settings.keep_warm_s), 1) * 1000
    ctx2: Any = ray.init(
        address="local",  # always a new cluster here, whatever RAY_ADDRESS says (CLOUDFN_RAY_ADDRESS joins one)
        num_cpus=settings.ray_num_cpus or os.cpu_count() or 2,
        namespace=namespace,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dash_port,
        _temp_dir=str(temp),
        logging_level=logging.WARNING,
        log_to_driver=False,
        _system_config={
            # Ray kills an idle worker (beyond its soft limit of one per CPU) after this: a burst's extra workers
            # and those whose warm children were evicted go well before keep_warm_s.
            "idle_worker_killing_time_threshold_ms": idle_worker_ms,
        },
    )
    url = ctx2.dashboard_url
    return RayInfo(ctx2.address_info.get("gcs_address", ""), f"http://{url}" if url else None, namespace,
                   str(temp))
