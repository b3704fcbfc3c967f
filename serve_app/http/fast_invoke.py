"""A lean ASGI path for `POST /v1/functions/{name}/invocations`, the platform's hottest route.

FastAPI's routing, dependency solving and middleware stack cost more per request than the whole rest of an
invocation of a short handler. This middleware answers the common forms of the route itself (query `wait`
and `version`, header `Idempotency-Key`) with the same behaviour, status codes and error bodies as the
FastAPI route, which stays declared (OpenAPI, and every other form of the request, e.g. `then=`).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from core.access import operation_of, require
from core.errors import CloudFnError
from core.models import INT32_MAX
from serve_app.http.errors import domain_error, error_body, mapped

log = logging.getLogger(__name__)
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]
PATH = re.compile(r"^/v1/functions/([^/]+)/invocations$")
MAX_WAIT_S = 900.0
INVOKE = operation_of("POST", "/v1/functions/{name}/invocations")


def _fast_params(query: bytes) -> dict[str, Any] | None:
    """The `wait`/`version` parameters if they are the only ones and valid; None sends the request down the
    FastAPI route (which also produces its validation errors)."""
    out: dict[str, Any] = {"wait": None, "version": None}
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        try:
            if key == "wait" and out["wait"] is None:
                wait = float(value)
                if not (0 <= wait <= MAX_WAIT_S) or math.isnan(wait):
                    return None
                out["wait"] = wait
            elif key == "version" and out["version"] is None:
                version = int(value)
                if not 1 <= version <= INT32_MAX:
                    return None
                out["version"] = version
            else:
                return None
        except ValueError:
            return None
    return out


class FastInvoke:
    """Pure-ASGI middleware: serves plain invocations, passes everything else to the app."""

    def __init__(self, app: ASGIApp, platform_of: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
        self.app = app
        self.platform_of = platform_of

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        match = PATH.match(scope.get("path", "")) if scope["type"] == "http" and scope["method"] == "POST" else None
        params = _fast_params(scope.get("query_string", b"")) if match else None
        if match is None or params is None:
            await self.app(scope, receive, send)
            return
        headers = {k: v for k, v in scope["headers"] if k in (b"authorization", b"idempotency-key")}
        try:
            platform = await self.platform_of(scope)
            caller = await platform.authenticate(header_text(headers.get(b"authorization")))
            require(caller, INVOKE)
            body = await read_body(receive)
            record, finished = await platform.invoke(
                caller, unquote(match.group(1)), body, version=params["version"], wait_s=params["wait"],
                idempotency_key=header_text(headers.get(b"idempotency-key")))
            await respond(send, 200 if finished else 202, record)
        except Exception as exc:
            await respond_error(send, exc)


async def respond_error(send: Callable[[dict[str, Any]], Awaitable[None]], exc: Exception) -> None:
    """Answer an error as the FastAPI app's handlers would (serve_app.http.errors)."""
    if isinstance(exc, CloudFnError):
        status, payload, headers = domain_error(exc)
        await respond(send, status, payload, [(k.lower().encode(), v.encode()) for k, v in headers.items()])
        return
    known = mapped(exc)
    if known is not None:
        status, payload, headers = domain_error(known)
        await respond(send, status, payload, [(k.lower().encode(), v.encode()) for k, v in headers.items()])
        return
    log.exception("unhandled error")
    await respond(send, 500, error_body("internal", f"internal error: {type(exc).__name__}"))


def header_text(raw: bytes | None) -> str | None:
    """An ASGI header value as text (None if absent)."""
    return None if raw is None else raw.decode("latin-1")


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    """The whole request body."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, payload: Any,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a JSON response (the same bytes FastAPI's JSONResponse sends)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
