"""NAB-like event scoring: windows, first detection, delay, false alarms per 10,000 normal points."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.detection.generate import Event

TOLERANCE = 30  # points after an event's end that still count as detecting it (adaptation time)
EPISODE_GAP = 10  # alarms closer than this outside windows count as one false alarm


@dataclass
class Result:
    """Counts over one or more series."""

    events: int = 0
    detected: int = 0
    false_alarms: int = 0
    normal_points: int = 0
    delays: list[int] = field(default_factory=list)
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [events, detected]

    def add(self, other: Result) -> None:
        """Accumulate another result."""
        self.events += other.events
        self.detected += other.detected
        self.false_alarms += other.false_alarms
        self.normal_points += other.normal_points
        self.delays += other.delays
        for k, (e, d) in other.by_kind.items():
            cur = self.by_kind.setdefault(k, [0, 0])
            cur[0] += e
            cur[1] += d

    def summary(self) -> dict[str, float]:
        """Precision, recall, F1, median delay, false alarms per 10k normal points."""
        p = self.detected / (self.detected + self.false_alarms) if self.detected + self.false_alarms else 0.0
        r = self.detected / self.events if self.events else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        return {
            "precision": p, "recall": r, "f1": f1,
            "median_delay": float(np.median(self.delays)) if self.delays else float("nan"),
            "fa_per_10k": 1e4 * self.false_alarms / max(self.normal_points, 1),
            "events": self.events, "detected": self.detected, "false_alarms": self.false_alarms,
        }


def score(alarms: np.ndarray, events: list[Event], warmup: int = 0) -> Result:
    """Score boolean alarms (one per point) against labelled events; the first `warmup` points are ignored."""
    n = len(alarms)
    in_window = np.zeros(n, dtype=bool)
    res = Result()
    for ev in events:
        lo, hi = ev.start, min(n, ev.end + TOLERANCE)
        in_window[lo:hi] = True
        hits = np.nonzero(alarms[lo:hi])[0]
        res.events += 1
        kind = res.by_kind.setdefault(ev.kind, [0, 0])
        kind[0] += 1
        if len(hits):
            res.detected += 1
            kind[1] += 1
            res.delays.append(int(hits[0]))
    normal = ~in_window
    normal[:warmup] = False
    res.normal_points = int(normal.sum())
    last = -(10**9)
    for i in np.nonzero(alarms & normal)[0]:
        if i - last >= EPISODE_GAP:
            res.false_alarms += 1
        last = int(i)
    return res
