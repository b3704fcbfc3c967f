"""`X-CloudFn-Replica` on every response: the name of the API replica that answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from serve_app.replicas.membership import replica_name

HEADER = b"x-cloudfn-replica"

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]


class ReplicaHeader:
    """Pure-ASGI middleware, the outermost: stamps the header on every HTTP response, fast paths included."""

    def __init__(self, app: Callable[..., Awaitable[None]], name: Callable[[], str] = replica_name) -> None:
        self.app = app
        self.name = name
        self.value: bytes | None = None  # resolved on the first request, when the replica context exists

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]], send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.value is None:
            self.value = self.name().encode("latin-1", "replace")
        value = self.value

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (HEADER, value)]
            await send(message)

        await self.app(scope, receive, stamped)
