"""The REST API client the poller uses: base URL, bearer key, typed GETs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


class ApiUnavailable(Exception):
    """The API did not answer, or answered a required route with an error."""


class RouteMissing(Exception):
    """An optional route answered 404 or 5xx (not deployed yet, or failing)."""


@dataclass(frozen=True)
class ApiConfig:
    """Where the API is and the key to use."""

    url: str
    key: str | None

    @classmethod
    def from_env(cls) -> ApiConfig:
        """CLOUDFN_API_URL (else 127.0.0.1:CLOUDFN_API_PORT); CLOUDFN_API_KEY, else $CLOUDFN_HOME/admin.key."""
        url = os.environ.get("CLOUDFN_API_URL") or f"http://127.0.0.1:{os.environ.get('CLOUDFN_API_PORT', '8000')}"
        key = os.environ.get("CLOUDFN_API_KEY")
        if not key:
            home = Path(os.environ.get("CLOUDFN_HOME") or Path.home() / ".cloudfn").expanduser()
            try:
                key = (home / "admin.key").read_text().strip() or None
            except OSError:
                key = None
        return cls(url.rstrip("/"), key)


class ApiClient:
    """Async GETs against the API with `Authorization: Bearer <key>` on every call."""

    def __init__(self, config: ApiConfig, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.key}"} if config.key else {}
        self._http = httpx.AsyncClient(base_url=config.url, headers=headers, timeout=timeout_s, transport=transport)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A required route's JSON body; ApiUnavailable on a transport error or any non-2xx."""
        try:
            r = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise ApiUnavailable(f"{self.config.url} unreachable: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if r.status_code >= 400:
            raise ApiUnavailable(f"GET {path} answered {r.status_code}: {_message(r)}")
        body = r.json()
        if isinstance(body, list):
            return {"items": body}
        return body if isinstance(body, dict) else {}

    async def get_optional(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """An optional route's JSON body (a bare JSON array as `{"items": [...]}`, as Alertmanager-shaped routes
        answer); RouteMissing on 404/5xx, ApiUnavailable on a transport error."""
        try:
            r = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise ApiUnavailable(f"{self.config.url} unreachable: {type(exc).__name__}") from exc
        if r.status_code >= 400:
            raise RouteMissing(f"GET {path} answered {r.status_code}")
        body = r.json()
        if isinstance(body, list):
            return {"items": body}
        return body if isinstance(body, dict) else {}

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


def _message(r: httpx.Response) -> str:
    """The contract's error message, or the start of the body."""
    try:
        err = r.json().get("error", {})
        return str(err.get("message") or err)
    except (ValueError, AttributeError):
        return r.text[:200]
