"""LISTEN for other replicas' notices: tasks handed to this replica, tasks that ended anywhere, functions
changed anywhere (deployed, activated, rolled back, deleted, their env replaced) and keys revoked anywhere.

One psycopg connection per replica listens on both channels; it reconnects with a growing backoff when the
database goes away. A notice lost meanwhile costs no task: a hand-off is found again by the dispatcher's scan
of the tasks this replica owns, and a long-poll answers with the current record when its wait runs out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from core.db.engine import libpq_url
from core.db.functions import CATALOG_CHANNEL, WARMED_CHANNEL
from core.db.keys import REVOKED_CHANNEL
from serve_app.write.writer import ENDED_CHANNEL, HANDOFF_CHANNEL

log = logging.getLogger(__name__)


class Notices:
    """Calls `on_ended(ids)` for every ended-tasks notice, `on_handed(ids)` for hand-offs to `me`,
    `on_changed(namespace, name)` for every function changed, `on_warmed(namespace, name)` when a function's
    home has started its warm children after a change, and `on_revoked(digest)` for every key revoked."""

    def __init__(self, database_url: str, me: str, *, on_ended: Callable[[list[str]], None],
                 on_handed: Callable[[list[str]], None], on_changed: Callable[[str, str], None],
                 on_warmed: Callable[[str, str], None], on_revoked: Callable[[str], None]) -> None:
        self.dsn = libpq_url(database_url)
        self.me = me
        self.on_ended = on_ended
        self.on_handed = on_handed
        self.on_changed = on_changed
        self.on_warmed = on_warmed
        self.on_revoked = on_revoked
        self.listening = asyncio.Event()  # set while subscribed (for tests and health)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen in the background until `close`."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {ENDED_CHANNEL}")
                    await conn.execute(f"LISTEN {HANDOFF_CHANNEL}")
                    await conn.execute(f"LISTEN {CATALOG_CHANNEL}")
                    await conn.execute(f"LISTEN {WARMED_CHANNEL}")
                    await conn.execute(f"LISTEN {REVOKED_CHANNEL}")
                    self.listening.set()
                    backoff = 0.1
                    async for notice in conn.notifies():
                        self._dispatch(notice.channel, notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("replica notices: connection lost (%r); listening again in %.1f s", exc, backoff)
            self.listening.clear()
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    def _dispatch(self, channel: str, payload: str) -> None:
        try:
            if channel == ENDED_CHANNEL:
                self.on_ended([i for i in payload.split(",") if i])
            elif channel == HANDOFF_CHANNEL:
                to, _, ids = payload.partition("|")
                if to == self.me:
                    self.on_handed([i for i in ids.split(",") if i])
            elif channel == CATALOG_CHANNEL:
                namespace, _, name = payload.partition("/")
                self.on_changed(namespace, name)
            elif channel == WARMED_CHANNEL:
                namespace, _, name = payload.partition("/")
                self.on_warmed(namespace, name)
            elif channel == REVOKED_CHANNEL:
                self.on_revoked(payload)
        except Exception:
            log.exception("replica notice on %s not handled", channel)
