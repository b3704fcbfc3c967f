"""Labelled synthetic operational series: seasonality, trend, noise, injected anomalies, long normal stretches."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("spike", "level_shift", "variance", "drift", "error_burst")


@dataclass
class Event:
    """One injected anomaly: points [start, end) are affected; detection counts from `start`."""

    kind: str
    start: int
    end: int


@dataclass
class Series:
    """A generated series with its labels."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    events: list[Event] = field(default_factory=list)


def _base(rng: np.random.Generator, n: int, dt: float) -> tuple[np.ndarray, np.ndarray, float, str]:
    t = 1_700_000_000.0 + dt * np.arange(n)
    level = float(rng.uniform(20, 500))
    sd = level * float(rng.uniform(0.02, 0.1))
    daily = sd * float(rng.choice([0.0, 2.0, 6.0]))
    weekly = sd * float(rng.choice([0.0, 0.0, 2.0]))
    trend = sd * float(rng.uniform(-2, 2)) / n  # a few deviations over the whole series
    phase = rng.uniform(0, 2 * np.pi, 2)
    mean = (level + daily * np.sin(2 * np.pi * t / 86400 + phase[0])
            + weekly * np.sin(2 * np.pi * t / 604800 + phase[1]) + trend * np.arange(n))
    noise_kind = str(rng.choice(["normal", "t4", "lognormal"]))
    if noise_kind == "normal":
        noise = rng.normal(0, sd, n)
    elif noise_kind == "t4":
        noise = rng.standard_t(4, n) * sd / np.sqrt(2)
    else:  # right-skewed, latency-like
        noise = (rng.lognormal(0, 0.5, n) - np.exp(0.125)) * sd / 0.6
    return t, mean + noise, sd, noise_kind


def generate(seed: int, n: int = 15000, dt: float = 300.0, n_events: int | None = None) -> Series:
    """One labelled series; event kinds, sizes and positions come from `seed`."""
    rng = np.random.default_rng(seed)
    t, x, sd, noise_kind = _base(rng, n, dt)
    k = int(rng.integers(3, 7)) if n_events is None else n_events
    events: list[Event] = []
    gap = n // (k + 1)
    for j in range(k):
        start = int(gap * (j + 1) + rng.integers(-gap // 5, gap // 5))
        kind = str(rng.choice(KINDS))
        sign = float(rng.choice([-1.0, 1.0]))
        if kind == "spike":
            x[start] += sign * sd * float(rng.uniform(6, 12))
            end = start + 1
        elif kind == "level_shift":
            x[start:] += sign * sd * float(rng.uniform(3, 6))
            end = start + 1
        elif kind == "variance":
            end = start + int(rng.integers(100, 300))
            x[start:end] += rng.normal(0, sd * float(rng.uniform(3, 5)), end - start)
        elif kind == "drift":
            end = start + int(rng.integers(200, 500))
            ramp = np.linspace(0, sign * sd * float(rng.uniform(5, 8)), end - start)
            x[start:end] += ramp
            x[end:] += ramp[-1]
        else:  # error burst: a short run of much higher values (error rate, 5xx count)
            end = start + int(rng.integers(3, 15))
            x[start:end] += sd * float(rng.uniform(5, 10))
        events.append(Event(kind, start, end))
    return Series(f"seed{seed}-{noise_kind}", t, x, events)
