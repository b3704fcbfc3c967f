"""Small streaming building blocks: a sorted sliding window with median and MAD."""

from __future__ import annotations

import bisect
from collections import deque


class SortedWindow:
    """The latest `size` values, kept sorted: O(size) push, O(1) median, O(size log size) MAD."""

    def __init__(self, size: int):
        self.size = size
        self.fifo: deque[float] = deque()
        self.sorted: list[float] = []

    def __len__(self) -> int:
        return len(self.fifo)

    def push(self, x: float) -> float | None:
        """Add x; return the value that fell out, if any."""
        out = None
        if len(self.fifo) == self.size:
            out = self.fifo.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, out)]
        self.fifo.append(x)
        bisect.insort(self.sorted, x)
        return out

    def median(self) -> float:
        """Median of the window (window must be non-empty)."""
        s = self.sorted
        k = len(s)
        return s[k // 2] if k % 2 else 0.5 * (s[k // 2 - 1] + s[k // 2])

    def mad(self, med: float | None = None) -> float:
        """Median absolute deviation from the median."""
        m = self.median() if med is None else med
        d = sorted(abs(v - m) for v in self.sorted)
        k = len(d)
        return d[k // 2] if k % 2 else 0.5 * (d[k // 2 - 1] + d[k // 2])
