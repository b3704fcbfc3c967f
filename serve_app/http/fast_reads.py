"""A lean ASGI path for reading task records: `GET /v1/tasks/{id}[?wait=S]`, `GET /v1/tasks?ids=…` and
`POST /v1/tasks/lookup`.

Like the invocation fast path, it answers the common forms itself with the routes' status codes, error
bodies and records, and leaves any other form (other query parameters, a malformed id) to the FastAPI
routes, which stay declared and produce the validation errors.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from core.access import operation_of, require
from serve_app.http.fast_invoke import ASGIApp, header_text, read_body, respond, respond_error
from serve_app.results.task_reads import TASK_ID_RE, ids_of_json, ids_of_query, parse_wait

READ_TASKS = operation_of("GET", "/v1/tasks/{task_id}")  # the same role as the FastAPI routes these serve

ONE_TASK = re.compile(r"^/v1/tasks/([^/]+)$")


def _only(query: bytes, name: str) -> str | None:
    """The value of `name` if it is the query's only parameter, else None."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return pairs[0][1] if len(pairs) == 1 and pairs[0][0] == name else None


class FastReads:
    """Pure-ASGI middleware: serves task reads, passes everything else to the app."""

    def __init__(self, app: ASGIApp, platform_of: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
        self.app = app
        self.platform_of = platform_of

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        route = self._route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        kind, arg = route
        try:
            platform = await self.platform_of(scope)
            auth = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            caller = await platform.authenticate(header_text(auth))
            require(caller, READ_TASKS)
            if kind == "one":
                task_id, wait = arg
                ns = caller.namespace
                rec = await (platform.reads.get(ns, task_id) if wait is None else
                             platform.reads.wait(ns, task_id, parse_wait(wait)))
                await respond(send, 200, rec)
                return
            ids = ids_of_query(arg) if kind == "query" else ids_of_json(await read_body(receive))
            await respond(send, 200, {"tasks": await platform.reads.lookup(caller.namespace, ids)})
        except Exception as exc:
            await respond_error(send, exc)

    @staticmethod
    def _route(scope: dict[str, Any]) -> tuple[str, Any] | None:
        """("one", (id, wait)), ("query", ids) or ("lookup", None) for a request served here, else None."""
        path, method, query = scope.get("path", ""), scope["method"], scope.get("query_string", b"")
        if method == "POST" and path == "/v1/tasks/lookup":
            return ("lookup", None) if not query else None
        if method != "GET":
            return None
        if path == "/v1/tasks":
            ids = _only(query, "ids")
            return ("query", ids) if ids else None
        match = ONE_TASK.match(path)
        if match is None:
            return None
        task_id = unquote(match.group(1))
        wait = _only(query, "wait") if query else None
        if (query and wait is None) or not TASK_ID_RE.match(task_id):
            return None
        return "one", (task_id, wait)
