"""The Ray Serve deployment hosting the FastAPI app (one replica: its caches and queues are authoritative)."""

from __future__ import annotations

import logging
from typing import Any

from ray import serve

from core.settings import Settings
from serve_app.app import create_app, set_platform
from serve_app.errors import unavailable_value
from serve_app.platform import Platform

log = logging.getLogger(__name__)
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
        """Serve health check: start the platform on first call, then check the database. An unreachable
        database does not fail it: restarting the replica cannot bring the database back, and would drop the
        results the writer holds until it answers (requests meanwhile get 503)."""
        await self.platform.start()
        try:
            await self.platform.healthy()
        except Exception as exc:
            if unavailable_value(exc) is None:
                raise
            log.warning("health check: the database is unavailable (%s); the replica stays up", exc)


def build(settings: Settings, database_url: str) -> Any:
    """The bound application for serve.run."""
    return CloudFnApi.bind(settings.model_dump(mode="json"), database_url)  # type: ignore[attr-defined]
