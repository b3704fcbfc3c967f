"""Alarm hygiene on a stream of surprises: a probationary start, and one alarm per episode.

During probation (the first `probation_rows` rows or the first `probation_s` seconds of timestamps,
whichever ends first) the detector learns and nothing is reported. Once a point's surprise reaches the
alarm level an episode opens: from then on only surprise beyond the episode's peak counts (a lasting
level shift, the run-up of an incident and its recovery are the same episode, so they page once; an
escalation to something clearly worse still shows). The episode closes when the surprise has stayed
below `calm` for `calm_points` points in a row (back to normal, or a new normal the models learnt).
"""

from __future__ import annotations

from analytics.detection.calibrate import ALARM_LOG10P


class EpisodeGate:
    """Turns raw surprises into reported ones: zero during probation, discounted inside an episode."""

    def __init__(self, alarm: float = ALARM_LOG10P, calm: float = 1.5, calm_points: int = 8,
                 max_points: int = 4096, probation_rows: int = 750, probation_s: float = 86400.0):
        self.alarm, self.calm, self.calm_points, self.max_points = alarm, calm, calm_points, max_points
        self.probation_rows, self.probation_s = probation_rows, probation_s
        self.rows = 0
        self.t0: float | None = None
        self.active = False
        self.peak = 0.0
        self.age = 0
        self.quiet = 0
        self.episodes = 0

    def in_probation(self, t: float) -> bool:
        """Whether a row at time t (the next one) falls in the probationary period."""
        t0 = t if self.t0 is None else self.t0
        return self.rows < self.probation_rows and t - t0 < self.probation_s

    def gate(self, t: float, surprise: float) -> float:
        """The surprise to report for this row (rows in order)."""
        probation = self.in_probation(t)
        if self.t0 is None:
            self.t0 = t
        self.rows += 1
        if probation:
            return 0.0
        if self.active:
            self.age += 1
            self.quiet = self.quiet + 1 if surprise < self.calm else 0
            if self.quiet < self.calm_points and self.age < self.max_points:
                out = max(0.0, surprise - self.peak)
                self.peak = max(self.peak, surprise)
                return out
            self.active = False
        if surprise >= self.alarm:
            self.active, self.peak, self.age, self.quiet = True, surprise, 0, 0
            self.episodes += 1
        return surprise
