"""A function config's completion destinations at rest and on show: checked at deploy, webhook secrets sealed
in the database and masked in the API."""

from __future__ import annotations

from typing import Any

from analytics.alerting.rules import check_http_url, secret_key
from core.errors import InvalidInput, NotFound
from core.models import DESTINATION_KEYS, FunctionConfig, FunctionDestination, WebhookDestination
from core.secrets import SecretBox


async def check(cfg: FunctionConfig, namespace: str, own_name: str, registry: Any) -> None:
    """Refuse destinations that cannot work (InvalidInput naming the field): a bad URL or secret, a function
    destination naming the function itself or a function that does not exist in the namespace."""
    for key in DESTINATION_KEYS:
        dest = getattr(cfg, key)
        try:
            if isinstance(dest, WebhookDestination):
                check_http_url(dest.url)
                secret_key(dest.secret)
        except ValueError as exc:
            raise InvalidInput(f"config.{key}: {exc}") from None
        if isinstance(dest, FunctionDestination) and dest.name == own_name:
            raise InvalidInput(f"config.{key}.name: a function cannot be its own destination")
        if isinstance(dest, FunctionDestination):
            try:
                await registry.resolve(namespace, dest.name, require_active=False)
            except NotFound:
                raise InvalidInput(f"config.{key}.name: no function named {dest.name!r} to deliver to; deploy it "
                                   "first") from None


def seal(stored: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """The stored form of a config: each webhook secret encrypted at rest (`secret_sealed`)."""
    out = dict(stored)
    for key in DESTINATION_KEYS:
        dest = out.get(key)
        if isinstance(dest, dict) and "secret" in dest:
            out[key] = {k: v for k, v in dest.items() if k != "secret"} | {
                "secret_sealed": box.seal({"secret": dest["secret"]})}
    return out


def unseal(stored: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """The inverse of `seal` (a config as FunctionConfig reads it)."""
    out = dict(stored)
    for key in DESTINATION_KEYS:
        dest = out.get(key)
        if isinstance(dest, dict) and "secret_sealed" in dest:
            out[key] = {k: v for k, v in dest.items() if k != "secret_sealed"} | {
                "secret": box.open(dest["secret_sealed"]).get("secret", "")}
    return out


def executor_config(cfg: FunctionConfig) -> dict[str, Any]:
    """The config an executor gets: destinations (and their secrets) stay in the API replica."""
    return cfg.model_dump(mode="json", exclude=set(DESTINATION_KEYS))
