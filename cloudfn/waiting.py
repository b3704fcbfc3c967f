"""Time budgets for waiting on tasks, shared by both clients: how long the server may hold a request (its
long-poll cap) and how long to pause between polls when it answers at once."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

HOLD_S = 60  # the longest a request asks the server to hold it (`wait` caps: invocation 900 s, long-poll 60 s)
FIRST_PAUSE_S = 0.05
T = TypeVar("T")


class Deadline:
    """An optional time limit, measured on the monotonic clock."""

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self.at = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)

    def remaining(self) -> float | None:
        """Seconds left (None: no limit)."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        """True once the limit has passed."""
        return self.at is not None and time.monotonic() >= self.at

    def hold(self) -> int:
        """Whole seconds a request may ask the server to hold it within what is left."""
        left = self.remaining()
        return HOLD_S if left is None else int(min(left, HOLD_S))


class Pauses:
    """Pauses between polls: short at first (a task often ends quickly), growing to `poll_s`."""

    def __init__(self, poll_s: float) -> None:
        self.poll_s = max(0.01, poll_s)
        self.next_s = min(FIRST_PAUSE_S, self.poll_s)

    def next(self, deadline: Deadline) -> float:
        """The next pause, never past the deadline."""
        pause, self.next_s = self.next_s, min(self.next_s * 1.5, self.poll_s)
        left = deadline.remaining()
        return pause if left is None else min(pause, left)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
