"""The SDK's client (`cloudfn.Client`) set up from the platform's Settings, for the CLI and the launcher."""

from __future__ import annotations

from typing import Any

from cloudfn import Client
from core.settings import Settings


def read_key(settings: Settings) -> str | None:
    """The API key: CLOUDFN_API_KEY, else $CLOUDFN_HOME/admin.key."""
    if settings.api_key:
        return settings.api_key
    try:
        return settings.admin_key_path.read_text().strip() or None
    except OSError:
        return None


def client_for(settings: Settings, *, timeout_s: float = 120.0) -> Client:
    """A client of the API these settings point at, with their key."""
    return Client(settings.resolved_api_url, read_key(settings), timeout_s=timeout_s)


def api_json(method: str, path: str, **kwargs: Any) -> Any:
    """One request to a route the SDK has no method for; its JSON body (None when empty). Raises CloudFnError."""
    r = client_for(Settings()).request(method, path, **kwargs)
    return r.json() if r.content else None
