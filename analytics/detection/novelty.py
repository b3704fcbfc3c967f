"""How new a value is to its series: two-sided rarity among the last few thousand values, tails extrapolated.

Inside the observed range the rarity is the empirical share of past values at least as extreme (so a jump
to a familiar level, a quiet night or a value a step-like series has held before is not new); beyond the
`tail_share` extremes the tail is exponential with the mean excess of those extremes as its scale (a
peaks-over-threshold fit), floored by the series' quantum, so a value past everything seen gets a finite,
ever smaller probability instead of a tie.
"""

from __future__ import annotations

import bisect
import math

from analytics.detection.windows import SortedWindow

_LN10 = math.log(10.0)


class ValueRarity:
    """Surprise (-log10 two-sided tail probability) of a value among the last `size` values."""

    def __init__(self, size: int = 4096, tail_share: float = 0.02, min_values: int = 32):
        self.values = SortedWindow(size)
        self.tail_share = tail_share
        self.min_values = min_values

    def surprise(self, x: float, floor: float) -> float:
        """-log10 P(a past value is at least as extreme as x, either side); 0 until `min_values` are seen."""
        s = self.values.sorted
        n = len(s)
        if n < self.min_values:
            return 0.0
        k = max(4, int(self.tail_share * n))
        base = math.log10(k / (n + 1.0))
        hi_u, lo_u = s[n - k], s[k - 1]
        if x > hi_u:
            beta = max(sum(s[n - k:]) / k - hi_u, floor)
            lp = base - (x - hi_u) / beta / _LN10
        elif x < lo_u:
            beta = max(lo_u - sum(s[:k]) / k, floor)
            lp = base - (lo_u - x) / beta / _LN10
        else:
            c = min(bisect.bisect_right(s, x), n - bisect.bisect_left(s, x))
            lp = math.log10(max(c, k) / (n + 1.0))
        return max(0.0, -(lp + math.log10(2.0)))

    def is_record(self, x: float) -> bool:
        """Whether x lies beyond every value held (False until `min_values` are seen)."""
        s = self.values.sorted
        return len(s) >= self.min_values and (x > s[-1] or x < s[0])

    def push(self, x: float) -> None:
        """Remember x (after it was scored)."""
        self.values.push(x)
