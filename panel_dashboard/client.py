"""The REST API client the pollers and the console's actions use: base URL, a login's bearer key, typed calls."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx


class ApiUnavailable(Exception):
    """The API did not answer, or answered a required route with an error."""


class RouteMissing(Exception):
    """An optional route answered 404 or 5xx (not deployed yet, or failing)."""


class ApiRefused(Exception):
    """An action the API refused or could not do: the message says why (shown to the user as is)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ApiConfig:
    """Where the API is and the key to use (a logged-in session's; the dashboard holds none of its own)."""

    url: str
    key: str | None

    @staticmethod
    def url_from_env() -> str:
        """CLOUDFN_API_URL, else http://127.0.0.1:CLOUDFN_API_PORT (8000)."""
        url = os.environ.get("CLOUDFN_API_URL") or f"http://127.0.0.1:{os.environ.get('CLOUDFN_API_PORT', '8000')}"
        return url.rstrip("/")


class ApiClient:
    """Async GETs against the API with `Authorization: Bearer <key>` on every call."""

    def __init__(self, config: ApiConfig, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.key}"} if config.key else {}
        # a plain-HTTP API needs no CA bundle: loading it cost each page's session 20-80 ms of the server's loop
        verify = not config.url.startswith("http://")
        self._http = httpx.AsyncClient(base_url=config.url, headers=headers, timeout=timeout_s, transport=transport,
                                       verify=verify)

    async def get(self, path: str, params: dict[str, Any] | None = None,
                  timeout_s: float | None = None) -> dict[str, Any]:
        """A required route's JSON body; ApiUnavailable on a transport error or any non-2xx."""
        try:
            r = await self._http.get(path, params=params,
                                     timeout=self._http.timeout if timeout_s is None else timeout_s)
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

    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None,
                   data: dict[str, str] | None = None, files: dict[str, tuple[str, bytes, str]] | None = None,
                   timeout_s: float | None = None) -> Any:
        """An action's answer: its JSON body (or text, or None for 204); ApiRefused with the API's message on any
        non-2xx or transport error."""
        try:
            r = await self._http.request(method, path, params=params, json=json, data=data, files=files,
                                         timeout=timeout_s if timeout_s is not None else self._http.timeout)
        except httpx.HTTPError as exc:
            raise ApiRefused(0, f"{self.config.url} unreachable: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if r.status_code >= 400:
            raise ApiRefused(r.status_code, f"{method} {path} answered {r.status_code}: {_message(r)}")
        if r.status_code == 204 or not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.text

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
