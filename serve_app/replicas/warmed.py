"""Waiting for another replica's warm children: the replica that activates a version homed elsewhere answers
once the home says (WARMED_CHANNEL) that it has started the version's warm children."""

from __future__ import annotations

import asyncio


class WarmedWaits:
    """Futures by function, registered before a change is committed (its notice may come back at once) and
    resolved by the home's notice."""

    def __init__(self) -> None:
        self._waits: dict[tuple[str, str], list[asyncio.Future[None]]] = {}

    def expect(self, namespace: str, name: str) -> asyncio.Future[None]:
        """A future the next notice for this function resolves."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waits.setdefault((namespace, name), []).append(fut)
        return fut

    def arrived(self, namespace: str, name: str) -> None:
        """The home's notice: every waiter of the function goes on."""
        for fut in self._waits.pop((namespace, name), []):
            if not fut.done():
                fut.set_result(None)

    def forget(self, namespace: str, name: str, fut: asyncio.Future[None]) -> None:
        """Drop a waiter (answered, timed out or its change failed)."""
        waits = self._waits.get((namespace, name), [])
        if fut in waits:
            waits.remove(fut)
        if not waits:
            self._waits.pop((namespace, name), None)
