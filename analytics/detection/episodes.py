"""Alarm hygiene on a stream of surprises: a probationary start, and one alarm per episode.

During probation (the first `probation_rows` rows or the first `probation_s` seconds of timestamps,
whichever ends first) the detector learns and nothing is reported. Once a point's surprise reaches the
alarm level an episode opens: from then on only surprise beyond the episode's peak counts (a lasting
level shift, the run-up of an incident and its recovery are the same episode, so they page once).

Surprises are not comparable across an episode (the first change of a flat series is measured against
almost no scale; after it the series has one), so escalation is judged by distance: an episode remembers
the forecast made just before it opened and its largest distance from it. A point that alarms on its own,
lies beyond every value the series has held (a record), on the same side of that forecast and at least
`escalation` times as far from it as the episode's largest excursion (a jump far past it, not the slow
growth of the same one) alarms again -- inside the episode, or within `max_points` rows of its opening
after it closed -- reported no lower than that episode's peak plus log10 of the distance ratio, so it
ranks above the smaller excursion.

The episode closes when the series is back to normal or has settled into a new normal: the surprise stayed
below `calm` for `calm_points` points in a row, or over the last `settle_window` points its mean fell
below `settle_mean` with none at the alarm level (a recurring pattern -- blips every few points -- that
the models have learnt keeps a mild surprise now and then but is no longer an incident). Surprise is a
calibrated -log10 p, whose mean on normal points is 1/ln 10 ~ 0.43, so `settle_mean` = 1 is a clearly
quieter-than-incident level, not a tuned one.
"""

from __future__ import annotations

import math
from collections import deque

from analytics.detection.calibrate import ALARM_LOG10P


class EpisodeGate:
    """Turns raw surprises into reported ones: zero during probation, discounted inside an episode."""

    # defaults for states pickled before escalation and settling existed
    ref = 0.0
    peak_dev = math.inf
    escalation = 2.0
    settle_window = 64
    settle_mean = 1.0
    escalations = 0
    _recent: deque[float] | None = None
    _recent_sum = 0.0
    _loud = 0  # surprises at the alarm level among `_recent`
    side = 0.0  # the sign of the excursion that opened the last episode
    opened = -(10**9)  # the row at which it opened

    def __init__(self, alarm: float = ALARM_LOG10P, calm: float = 1.5, calm_points: int = 8,
                 max_points: int = 4096, probation_rows: int = 750, probation_s: float = 86400.0,
                 escalation: float = 2.0, settle_window: int = 64, settle_mean: float = 1.0):
        self.alarm, self.calm, self.calm_points, self.max_points = alarm, calm, calm_points, max_points
        self.probation_rows, self.probation_s = probation_rows, probation_s
        self.escalation, self.settle_window, self.settle_mean = escalation, settle_window, settle_mean
        self.rows = 0
        self.t0: float | None = None
        self.active = False
        self.peak = 0.0
        self.age = 0
        self.quiet = 0
        self.episodes = 0
        self.escalations = 0
        self.ref = 0.0  # the forecast made just before the episode opened
        self.peak_dev = math.inf  # the largest |value - ref| inside the episode
        self.side = 0.0
        self.opened = -(10**9)
        self._recent = deque()
        self._recent_sum = 0.0
        self._loud = 0

    def in_probation(self, t: float) -> bool:
        """Whether a row at time t (the next one) falls in the probationary period."""
        t0 = t if self.t0 is None else self.t0
        return self.rows < self.probation_rows and t - t0 < self.probation_s

    def gate(self, t: float, surprise: float, value: float = 0.0, expected: float = 0.0, record: bool = False) -> float:
        """The surprise to report for this row (rows in order).

        `expected` is the forecast made before `value`; `record` whether `value` lies beyond every value held.
        """
        probation = self.in_probation(t)
        if self.t0 is None:
            self.t0 = t
        self.rows += 1
        if probation:
            return 0.0
        if self.active:
            self.age += 1
            self.quiet = self.quiet + 1 if surprise < self.calm else 0
            settled = self._settled(surprise)
            if self.quiet < self.calm_points and self.age < self.max_points and not settled:
                return self._in_episode(surprise, value, record)
            self.active = False
        if surprise >= self.alarm:
            surprise = max(surprise, self._escalated(surprise, value, record))
            self._open(surprise, value, expected)
        return surprise

    def _escalated(self, surprise: float, value: float, record: bool) -> float:
        """The surprise an alarming point escalating the last episode reports (0 if it does not escalate)."""
        if not record or self.episodes == 0 or surprise < self.alarm or (value - self.ref) * self.side <= 0.0:
            return 0.0
        if not self.active and self.rows - self.opened > self.max_points:
            return 0.0  # a closed episode is a yardstick for the next while only
        dev = abs(value - self.ref)
        if not dev >= self.escalation * self.peak_dev > 0.0:
            return 0.0
        self.escalations += 1
        return max(surprise, self.peak + math.log10(dev / self.peak_dev))

    def _open(self, surprise: float, value: float, expected: float) -> None:
        self.active, self.peak, self.age, self.quiet = True, surprise, 0, 0
        self.ref, self.peak_dev = expected, abs(value - expected)
        self.side, self.opened = math.copysign(1.0, value - expected), self.rows
        self._recent = deque()
        self._recent_sum = 0.0
        self._loud = 0
        self.episodes += 1

    def _in_episode(self, surprise: float, value: float, record: bool) -> float:
        """Only surprise beyond the peak counts, unless the point escalates the episode by distance."""
        dev = abs(value - self.ref)
        out = self._escalated(surprise, value, record)
        if out > 0.0:
            self.peak, self.peak_dev = out, dev
            return out
        self.peak_dev = max(self.peak_dev, dev)
        out = max(0.0, surprise - self.peak)
        self.peak = max(self.peak, surprise)
        return out

    def _settled(self, surprise: float) -> bool:
        """Whether the last `settle_window` surprises are quiet on average with none at the alarm level."""
        r = self._recent
        if r is None:
            r = self._recent = deque()
        r.append(surprise)
        self._recent_sum += surprise
        self._loud += surprise >= self.alarm
        if len(r) > self.settle_window:
            old = r.popleft()
            self._recent_sum -= old
            self._loud -= old >= self.alarm
        if len(r) < self.settle_window or self._loud:
            return False
        return self._recent_sum < self.settle_mean * self.settle_window
