"""Start a local Ray cluster for the platform, or join CLOUDFN_RAY_ADDRESS."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

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
    """Ray's temp dir: short (Unix socket paths), private (0700), one per instance."""
    return Path("/tmp") / f"cfray-{instance_id(settings)}"


def start_or_join(settings: Settings) -> RayInfo:
    """Connect this process to Ray as the platform's driver."""
    namespace = f"cloudfn-{instance_id(settings)}"
    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        return RayInfo(ctx.gcs_address, None, ctx.namespace, None)
    for k, v in SERVE_ENV.items():
        os.environ.setdefault(k, v)
    if settings.ray_address:
        ctx = ray.init(address=settings.ray_address, namespace=namespace, logging_level="WARNING",
                       log_to_driver=False)
        return RayInfo(settings.ray_address, ctx.dashboard_url, namespace, None)
    temp = ray_temp_dir(settings)
    temp.mkdir(mode=0o700, exist_ok=True)
    os.chmod(temp, 0o700)
    dash_port = settings.ray_dashboard_port or free_port()
    keep_warm_ms = max(settings.keep_warm_s, 1) * 1000
    ctx = ray.init(
        num_cpus=settings.ray_num_cpus or os.cpu_count() or 2,
        namespace=namespace,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dash_port,
        _temp_dir=str(temp),
        logging_level="WARNING",
        log_to_driver=False,
        _system_config={
            # Keep recently used functions' workers (and their warm sandboxes) alive.
            "idle_worker_killing_time_threshold_ms": keep_warm_ms,
        },
    )
    url = ctx.dashboard_url
    return RayInfo(ctx.address_info.get("gcs_address", ""), f"http://{url}" if url else None, namespace,
                   str(temp))
