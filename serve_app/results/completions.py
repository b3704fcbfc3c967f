"""In-replica wake-up of long-poll readers when the group-commit writer commits a task's terminal result.

The writer publishes the ids of terminal results right after their transaction commits, so a reader that
registered before reading the row either saw the ended task or is woken by the commit that ends it; nothing
polls the database in a loop. With several API replicas the writer also `NOTIFY`s the ended ids in the same
transaction and every replica's listener (`serve_app.replicas.notices`) publishes them here, so a reader is woken
on whichever replica it waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Completions:
    """Waiters by task id, woken once that task's terminal result is committed."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def watch(self, task_id: str) -> asyncio.Future[None]:
        """A future resolved when `task_id` ends (call `unwatch` with it when done waiting)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, set()).add(fut)
        return fut

    def unwatch(self, task_id: str, fut: asyncio.Future[None]) -> None:
        """Stop waiting (after a wake-up or a timeout)."""
        waiters = self._waiters.get(task_id)
        if waiters is not None:
            waiters.discard(fut)
            if not waiters:
                del self._waiters[task_id]

    def publish(self, task_ids: Iterable[str]) -> None:
        """These tasks' terminal results are committed: wake whoever waits for them."""
        if not self._waiters:
            return
        for task_id in task_ids:
            for fut in self._waiters.pop(task_id, ()):
                if not fut.done():
                    fut.set_result(None)

    def waiting(self) -> int:
        """How many tasks have a waiter (for tests and metrics)."""
        return len(self._waiters)
