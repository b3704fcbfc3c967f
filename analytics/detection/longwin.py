"""A long trailing window's mean and standard deviation: how far a value lies from the series' recent regime.

Mean and variance (not median and MAD) on purpose: a step-like series that keeps switching between
familiar levels has a wide standard deviation, so a jump to one of those levels is ordinary, while a
level beyond all of them, or a slow leak carrying the series past its usual range, stands out. Running
sums are re-based on a reference value and recomputed exactly every `resum` pushes (no float drift).
"""

from __future__ import annotations

import math
from collections import deque


class LongWindow:
    """|x - mean| / sd over the last `size` values, O(1) per push."""

    __slots__ = ("size", "min_values", "resum", "values", "ref", "s1", "s2", "pushes")

    def __init__(self, size: int = 2000, min_values: int = 64, resum: int = 4096):
        self.size, self.min_values, self.resum = size, min_values, resum
        self.values: deque[float] = deque()
        self.ref: float | None = None
        self.s1 = 0.0
        self.s2 = 0.0
        self.pushes = 0

    def deviation(self, x: float, floor: float) -> float | None:
        """Standardised distance of x from the window (None until `min_values` are held)."""
        k = len(self.values)
        if k < self.min_values or self.ref is None:
            return None
        m = self.s1 / k
        var = max(self.s2 / k - m * m, 0.0)
        return min(abs(x - self.ref - m) / (math.sqrt(var) + floor), 1e15)

    def push(self, x: float) -> None:
        """Add x (after it was scored), dropping the oldest value once full."""
        if self.ref is None:
            self.ref = x
        d = x - self.ref
        self.values.append(d)
        self.s1 += d
        self.s2 += d * d
        if len(self.values) > self.size:
            o = self.values.popleft()
            self.s1 -= o
            self.s2 -= o * o
        self.pushes += 1
        if self.pushes % self.resum == 0:
            self._resum()

    def _resum(self) -> None:
        """Re-base on the window's mean and recompute the sums exactly."""
        if self.ref is None or not self.values:
            return
        shift = self.s1 / len(self.values)
        vals = [v - shift for v in self.values]
        self.ref += shift
        self.values = deque(vals)
        self.s1 = math.fsum(vals)
        self.s2 = math.fsum(v * v for v in vals)
