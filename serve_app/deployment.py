"""The Ray Serve deployment hosting the FastAPI app (one replica: its caches and queues are authoritative)."""

from __future__ import annotations

from typing import Any

from ray import serve

from core.settings import Settings
from serve_app.app import create_app, set_platform
from serve_app.platform import Platform

app = create_app()


@serve.deployment(num_replicas=1, max_ongoing_requests=2000, ray_actor_options={"num_cpus": 0},
                  # every task is recorded in the database; Serve's per-request access log would double the work
                  logging_config={"enable_access_log": False, "log_level": "WARNING"},
                  health_check_period_s=5)
@serve.ingress(app)
class CloudFnApi:
    """Owns the replica's Platform; routes reach it through app.state."""

    def __init__(self, settings: dict[str, Any], database_url: str) -> None:
        self.platform = Platform(Settings(**settings), database_url)
        set_platform(app, self.platform)

    async def check_health(self) -> None:
        """Serve health check: start the platform on first call, then check the database."""
        await self.platform.start()
        await self.platform.healthy()


def build(settings: Settings, database_url: str) -> Any:
    """The bound application for serve.run."""
    return CloudFnApi.bind(settings.model_dump(mode="json"), database_url)  # type: ignore[attr-defined]
