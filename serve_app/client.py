"""A small typed HTTP client for the REST API (used by the CLI and the launcher)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from core.settings import Settings


class ApiError(Exception):
    """A non-2xx answer, with the API's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def read_key(settings: Settings) -> str | None:
    """The API key: CLOUDFN_API_KEY, else $CLOUDFN_HOME/admin.key."""
    if settings.api_key:
        return settings.api_key
    try:
        return settings.admin_key_path.read_text().strip()
    except OSError:
        return None


class Client:
    """Calls the API with the bearer key."""

    def __init__(self, settings: Settings, *, timeout_s: float = 120.0) -> None:
        key = read_key(settings)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=settings.resolved_api_url, headers=headers, timeout=timeout_s)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Send; raise ApiError on a non-2xx answer."""
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the API at {self.http.base_url} ({exc}); is `cloudfn up` running?") \
                from None
        if r.status_code >= 400:
            try:
                msg = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                msg = r.text[:300]
            raise ApiError(r.status_code, msg)
        return r

    def json(self, method: str, path: str, **kw: Any) -> Any:
        """Send and decode the JSON answer."""
        r = self.request(method, path, **kw)
        return r.json() if r.content else None

    def deploy(self, name: str, archive: bytes, handler: str | None, config: dict[str, Any] | None) -> Any:
        """Upload a ZIP as a new version."""
        data: dict[str, str] = {"name": name}
        if handler:
            data["handler"] = handler
        if config:
            data["config"] = json.dumps(config)
        return self.json("POST", "/v1/functions", data=data,
                         files={"archive": ("bundle.zip", archive, "application/zip")})


def load_archive(path: Path) -> bytes:
    """A ZIP file's bytes, or a folder zipped deterministically."""
    from core.bundles import zip_folder

    if path.is_dir():
        return zip_folder(path)
    return path.read_bytes()
