"""The Serve config file (configs/serve.yaml): validated with Serve's own schema, read by `cloudfn up`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from cluster.ray_runtime import SERVE_ENV
from core.settings import Settings

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "configs" / "serve.yaml"
APP_NAME = "cloudfn"
DEPLOYMENT_NAME = "CloudFnApi"


class ServeConfigError(ValueError):
    """The Serve config file is missing, unreadable or not a valid Serve config for the platform."""


@dataclass(frozen=True)
class ServeOptions:
    """What `cloudfn up` takes from the Serve config, environment variables already applied."""

    source: Path | None
    app_name: str = APP_NAME
    route_prefix: str = "/"
    host: str = "127.0.0.1"
    port: int = 8000
    proxy_location: str | None = None
    deployment: dict[str, Any] = field(default_factory=dict)  # options for CloudFnApi.options(...)
    env_vars: dict[str, str] = field(default_factory=dict)  # the application's runtime_env variables
    controller_env_vars: dict[str, str] = field(default_factory=dict)

    def replica_bound(self) -> int:
        """How many API replicas may run at once: num_replicas, or autoscaling's max_replicas (1 tells each
        replica it is the only one)."""
        d = self.deployment
        if "autoscaling_config" in d:
            auto = d["autoscaling_config"] or {}
            return max(2, int(auto.get("max_replicas", 2) if isinstance(auto, dict) else 2))
        n = d.get("num_replicas", 1)
        return n if isinstance(n, int) and n >= 1 else 2  # "auto" scales too

    def describe(self) -> str:
        """One line for the start-up log."""
        d = self.deployment
        replicas = d.get("num_replicas", "autoscaling" if "autoscaling_config" in d else 1)
        return (f"app {self.app_name!r} at {self.route_prefix} on {self.host}:{self.port}, replicas {replicas}, "
                f"max_ongoing_requests {d.get('max_ongoing_requests', 'default')} (from {self.source or 'defaults'})")


def config_path(settings: Settings) -> Path | None:
    """CLOUDFN_SERVE_CONFIG, else the repository's configs/serve.yaml if present (None: the built-in options)."""
    if settings.serve_config is not None:
        return settings.serve_config
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def parse_serve_config(text: str, source: str = "<text>") -> ServeDeploySchema:
    """Parse and validate a Serve config with Ray's ServeDeploySchema; ServeConfigError says what is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ServeConfigError(f"{source}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ServeConfigError(f"{source}: expected a mapping with an `applications` list")
    try:
        return ServeDeploySchema.model_validate(data)
    except ValidationError as exc:
        raise ServeConfigError(f"{source}: not a valid Serve config: {exc}") from None


def load_serve_options(settings: Settings) -> ServeOptions:
    """The platform's Serve options: the config file's, then CLOUDFN_API_HOST/PORT/REPLICAS where set."""
    path = config_path(settings)
    if path is None:
        opts = ServeOptions(source=None, host=settings.api_host, port=settings.api_port, env_vars=dict(SERVE_ENV))
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ServeConfigError(f"cannot read the Serve config {path}: {exc} (CLOUDFN_SERVE_CONFIG)") from None
        opts = options_from_schema(parse_serve_config(text, str(path)), path)
    return with_environment(opts, settings)


def options_from_schema(schema: ServeDeploySchema, source: Path | None) -> ServeOptions:
    """Pick the platform's application and deployment out of a validated config."""
    apps = {a.name: a for a in schema.applications}
    app = apps.get(APP_NAME)
    if app is None:
        raise ServeConfigError(f"{source}: no application named {APP_NAME!r} (found {sorted(apps)})")
    deployments = {d.name: d for d in app.deployments}
    if set(deployments) - {DEPLOYMENT_NAME}:
        raise ServeConfigError(f"{source}: application {APP_NAME!r} has only the deployment {DEPLOYMENT_NAME!r}, "
                               f"not {sorted(set(deployments) - {DEPLOYMENT_NAME})}")
    dep = deployments.get(DEPLOYMENT_NAME)
    options = {} if dep is None else dep.model_dump(exclude_unset=True, exclude={"name"}, mode="json")
    controller = schema.controller_options
    controller_env = dict((controller.runtime_env or {}).get("env_vars") or {}) if controller else {}
    return ServeOptions(
        source=source,
        app_name=app.name,
        route_prefix=app.route_prefix or "/",
        host=schema.http_options.host,
        port=schema.http_options.port,
        proxy_location=str(schema.proxy_location.value),
        deployment=options,
        env_vars={k: str(v) for k, v in (app.runtime_env.get("env_vars") or {}).items()},
        controller_env_vars={k: str(v) for k, v in controller_env.items()},
    )


def with_environment(opts: ServeOptions, settings: Settings) -> ServeOptions:
    """CONTRACT's environment variables win over the file: CLOUDFN_API_HOST, _PORT and _REPLICAS."""
    env_set = settings.model_fields_set
    deployment = dict(opts.deployment)
    if settings.api_replicas is not None:
        deployment.pop("autoscaling_config", None)
        deployment["num_replicas"] = settings.api_replicas
    return replace(
        opts,
        host=settings.api_host if "api_host" in env_set else opts.host,
        port=settings.api_port if "api_port" in env_set else opts.port,
        deployment=deployment,
    )
