"""Create or find the platform's long-lived actors by name (one set per Ray namespace, i.e. per instance)."""

from __future__ import annotations

import zlib
from typing import Any

from actors.alerts import AlertDispatcher
from actors.detector import DetectorShard
from analytics.alerting.channel_config import ChannelSettings
from analytics.alerting.config import AlertingConfig

DETECTOR_SHARDS = 1  # raise with the cluster: each shard is one process hosting many functions' models


def shard_of(namespace: str, function: str, shards: int = DETECTOR_SHARDS) -> int:
    """Stable shard index of a function."""
    return zlib.crc32(f"{namespace}/{function}".encode()) % shards


def placement(resource: str | None) -> dict[str, Any]:
    """Actor options that place a monitoring actor on a node offering this custom Ray resource (none: anywhere)."""
    return {"resources": {resource: 0.001}} if resource else {}


def detector_shards(database_url: str, shards: int = DETECTOR_SHARDS, resource: str | None = None) -> list[Any]:
    """The detector shard actors (created if missing; detached so they outlive a replica restart)."""
    return [DetectorShard.options(name=f"cloudfn-detector-{i}", get_if_exists=True, lifetime="detached",  # type: ignore[attr-defined]
                                  **placement(resource)).remote(database_url) for i in range(shards)]


def alert_dispatcher(database_url: str, lake_path: str, api_url: str, channels: ChannelSettings,
                     config: AlertingConfig, resource: str | None = None) -> Any:
    """The alert dispatcher actor (created if missing) with the platform's channel settings and alerting file."""
    return AlertDispatcher.options(name="cloudfn-alerts", get_if_exists=True, lifetime="detached",  # type: ignore[attr-defined]
                                   **placement(resource)).remote(database_url, lake_path, api_url, channels, config)
