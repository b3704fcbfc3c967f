"""Settings from CLOUDFN_* environment variables (CONTRACT.md), with the platform's tunables."""

from __future__ import annotations

import ipaddress
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.smtp_url import parse_smtp_url

TWILIO_API = "https://api.twilio.com"
ALERTING_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "alerting.yaml"  # this checkout's
CHANNEL_FIELDS = ("smtp_url", "smtp_from", "sms_provider", "sms_url", "sms_sid", "sms_token", "sms_from")
LAKE_OBJECT_SCHEMES = ("s3", "gs", "gcs")  # CLOUDFN_LAKE_URI schemes that mean object storage


WARM_MEMORY_FRACTION = 0.25  # of the host's memory: the default budget of warm sandboxed children and lanes


def default_warm_memory_mb() -> int:
    """A quarter of this host's memory (MemTotal), in MiB; 1024 if /proc/meminfo cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return max(64, int(int(line.split()[1]) / 1024 * WARM_MEMORY_FRACTION))
    except (OSError, ValueError, IndexError):
        pass
    return 1024


def file_channel_settings(path: Path) -> dict[str, object]:
    """The `channels:` section of the alerting file (empty if there is no file); ValueError if unreadable."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read it as YAML ({exc})") from None
    section = data.get("channels") if isinstance(data, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: channels must be a mapping of {', '.join(CHANNEL_FIELDS)}")
    return {k: v for k, v in section.items() if k in CHANNEL_FIELDS}


class Settings(BaseSettings):
    """Everything configurable; every field reads `CLOUDFN_<NAME>`."""

    # hide_input_in_errors: a bad CLOUDFN_SMTP_URL must not print its password into the start-up error
    model_config = SettingsConfigDict(env_prefix="CLOUDFN_", extra="ignore", hide_input_in_errors=True)

    home: Path = Field(default_factory=lambda: Path.home() / ".cloudfn")
    database_url: str | None = None
    ray_address: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_replicas: int | None = Field(default=None, ge=1)  # unset: the Serve config's num_replicas
    serve_config: Path | None = None  # unset: configs/serve.yaml of this checkout
    dashboard_port: int = Field(default=5006, ge=1, le=65535)
    lake_uri: str | None = None
    api_url: str | None = None
    api_key: str | None = None

    # Bundle caps: AWS Lambda's defaults.
    max_zip_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_unpacked_bytes: int = Field(default=250 * 1024 * 1024, gt=0)
    max_zip_entries: int = Field(default=100_000, gt=0)

    # The sandbox: unset = the jail (fail closed); "insecure" = run without it (development only)
    sandbox: str = Field(default="", pattern=r"^(|jail|insecure)$")
    egress_allow: str = ""  # comma-separated CIDRs a `network: true` function may also reach

    # Platform caps on what a function's config may ask for (4xx beyond them)
    cap_memory_mb: int = Field(default=4096, ge=32)
    cap_processes: int = Field(default=256, ge=1)
    cap_cpu_s: float = Field(default=900.0, gt=0)
    cap_tmp_mb: int = Field(default=1024, ge=1)
    cap_output_kb: int = Field(default=16384, ge=1)
    cap_open_files: int = Field(default=4096, ge=16)

    # Ray
    ray_num_cpus: int | None = None
    ray_dashboard_port: int | None = None
    keep_warm_s: int = Field(default=600, ge=0)
    # warm memory per host (PSS of warm sandboxed children and of the workers holding them): least recently
    # used children are evicted beyond it
    warm_memory_mb: int = Field(default_factory=default_warm_memory_mb, ge=16)
    # Ray kills a worker idle this long (one left by a burst, or whose warm children were evicted); at most
    # keep_warm_s. Express lanes and shared warm hosts are actors: Ray never reaps those.
    idle_worker_s: int = Field(default=60, ge=1)
    # shared warm hosts per API replica (actors holding many versions' warm children); unset: one per CPU;
    # 0: none (each version's calls run in Ray workers of its own runtime_env, as before)
    warm_hosts: int | None = Field(default=None, ge=0, le=64)
    # a custom Ray resource: the detector shards and the alert dispatcher run only on nodes offering it
    monitor_resource: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")

    # Per-tenant quotas (generous: a tenant without overrides is limited only by these; PUT /v1/tenants/{name}/quotas
    # sets one tenant's own)
    quota_concurrency: int = Field(default=1000, ge=1)  # its executions running at once; the rest wait queued
    quota_queued_tasks: int = Field(default=100_000, ge=0)  # its invocations waiting to run; beyond: 429
    quota_functions: int = Field(default=10_000, ge=0)  # its live functions; a deploy of one more: 429
    quota_bundle_bytes: int = Field(default=100 * 1024**3, ge=0)  # bytes of its distinct bundles in use
    quota_invocations_per_s: int = Field(default=100_000, ge=1)  # its token bucket's refill rate
    quota_burst: int = Field(default=100_000, ge=1)  # the bucket's size

    # Metrics lake flush interval
    lake_flush_s: float = Field(default=2.0, gt=0)

    # Alert channels: e-mail through one SMTP URL, SMS through Twilio's Messages API (or a generic JSON provider)
    smtp_url: str | None = Field(default=None, repr=False)
    smtp_from: str | None = None
    sms_provider: Literal["twilio", "json"] = "twilio"
    sms_url: str = TWILIO_API
    sms_sid: str | None = None
    sms_token: str | None = Field(default=None, repr=False)
    sms_from: str | None = None
    # Routes, receivers, grouping, inhibition; its `channels:` section fills the settings above not set otherwise
    alerting_config: Path = ALERTING_CONFIG

    @model_validator(mode="before")
    @classmethod
    def _channels_from_file(cls, data: object) -> object:
        """Channel settings from the alerting file, for each one no variable (or argument) set: variables win."""
        if not isinstance(data, dict):
            return data
        path = Path(str(data.get("alerting_config") or ALERTING_CONFIG)).expanduser()
        from_file = file_channel_settings(path)
        return {**{k: v for k, v in from_file.items() if data.get(k) in (None, "")}, **{
            k: v for k, v in data.items() if v not in (None, "") or k not in from_file}}

    @field_validator("alerting_config", mode="after")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser() if v.expanduser().is_absolute() else Path.cwd() / v

    @field_validator("smtp_url", "smtp_from", "sms_sid", "sms_token", "sms_from", mode="before")
    @classmethod
    def _blank_is_unset(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_smtp_url(v)
            except ValueError as exc:
                raise ValueError(f"CLOUDFN_SMTP_URL: {exc}") from None
        return v

    @field_validator("smtp_from")
    @classmethod
    def _smtp_from(cls, v: str | None) -> str | None:
        if v is not None and "@" not in parseaddr(v)[1]:
            raise ValueError(f"CLOUDFN_SMTP_FROM: {v!r} is not an address like alerts@example.com "
                             "or 'CloudFn <alerts@example.com>'")
        return v

    @field_validator("sms_url")
    @classmethod
    def _sms_url(cls, v: str) -> str:
        parts = urlsplit(v.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"CLOUDFN_SMS_URL: {v!r} is not an http(s) URL like {TWILIO_API}")
        return v.strip().rstrip("/")

    @field_validator("egress_allow")
    @classmethod
    def _cidrs(cls, v: str) -> str:
        for part in (p.strip() for p in v.split(",")):
            if part:
                try:
                    ipaddress.ip_network(part, strict=False)
                except ValueError as exc:
                    raise ValueError(f"CLOUDFN_EGRESS_ALLOW: {part!r} is not a CIDR like 10.1.2.0/24: {exc}") from None
        return v

    @field_validator("home", mode="before")
    @classmethod
    def _expand_home(cls, v: object) -> object:
        return Path(str(v)).expanduser() if v is not None else v

    @property
    def lake_location(self) -> str:
        """Where the lake is: s3://bucket/prefix or gs://bucket/prefix as given, else the local folder."""
        uri = (self.lake_uri or "").strip()
        if "://" in uri and uri.split("://", 1)[0] in LAKE_OBJECT_SCHEMES:
            return uri
        return str(self.lake_path)

    @property
    def lake_path(self) -> Path:
        """The lake's local folder (when it is not on object storage)."""
        uri = self.lake_uri or str(self.home / "lake")
        return Path(uri.removeprefix("file://")).expanduser()

    @property
    def resolved_api_url(self) -> str:
        """Where the CLI sends requests."""
        return (self.api_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")

    @property
    def admin_key_path(self) -> Path:
        """The admin key file (mode 0600)."""
        return self.home / "admin.key"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
