"""The Ray Serve deployment hosting the FastAPI app (one replica by default; several share the work through
`serve_app.replicas`).

The decorator's options are the defaults; configs/serve.yaml states the same ones and `cloudfn up` applies the
file's (tests/unit/test_configs.py checks they agree). `app_builder` is the entry for `serve deploy`."""

from __future__ import annotations

import logging
from typing import Any

from ray import serve

from core.settings import Settings
from serve_app.http.app import create_app
from serve_app.http.errors import unavailable_value
from serve_app.platform import Platform

log = logging.getLogger(__name__)


@serve.deployment(num_replicas=1, max_ongoing_requests=2000, ray_actor_options={"num_cpus": 0},
                  # every task is recorded in the database; Serve's per-request access log would double the work
                  logging_config={"enable_access_log": False, "log_level": "WARNING"},
                  health_check_period_s=5)
@serve.ingress()
class CloudFnApi:
    """Owns the replica's Platform; Serve asks it for the app after construction, so the app it serves is the
    one built over this platform (no copy of a module-level app, no process-wide current platform)."""

    def __init__(self, settings: dict[str, Any], database_url: str) -> None:
        self.platform = Platform(Settings(**settings), database_url)

    def __serve_build_asgi_app__(self) -> Any:
        """The replica's FastAPI app, over its platform."""
        return create_app(self.platform)

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


def build(settings: Settings, database_url: str, options: dict[str, Any] | None = None) -> Any:
    """The bound application for serve.run, with the Serve config's deployment options if given."""
    deployment: Any = CloudFnApi.options(**options) if options else CloudFnApi  # type: ignore[attr-defined]
    return deployment.bind(settings.model_dump(mode="json"), database_url)


def app_builder(args: dict[str, Any]) -> Any:
    """`serve deploy configs/serve.yaml`: settings from CLOUDFN_* (and the config's `args`); an external
    database is required; migrates it and makes the admin key (in this node's CLOUDFN_HOME) if missing."""
    from core.auth import ensure_admin_key
    from core.db.engine import make_engine
    from core.db.migrate import upgrade

    settings = Settings(**args)
    if not settings.database_url:
        raise ValueError("serve deploy needs CLOUDFN_DATABASE_URL (an external PostgreSQL, e.g. "
                         "postgresql+psycopg://cloudfn@db:5432/cloudfn): the embedded one is only for `cloudfn up`")
    upgrade(settings.database_url)
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        ensure_admin_key(engine, settings.admin_key_path)
    finally:
        engine.dispose()
    return build(settings, settings.database_url)
