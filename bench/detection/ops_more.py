"""More families shaped like real operations, each with normal behaviour a naive detector pages for.

Recurring blips (cron jobs), GC sawtooth, counters that reset, daily+weekly traffic, heavy-tailed latency
with rare huge outliers that are normal, variance regimes, mostly-zero batch metrics, spiky cloud CPU and
a slowly wandering temperature. Every shape, noise level and anomaly is drawn from the seed (so a seed
base is a fresh draw of the same families); nothing is copied from any public benchmark.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.detection.generate import Event, Series
from bench.detection.ops import T0, _noise, _positions, _t


def _quantise(x: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Round to a seed-drawn resolution relative to `scale` (or not at all), as exporters do."""
    q = scale * float(rng.choice([0.0, 0.01, 0.05, 0.2]))
    return np.round(x / q) * q if q > 0 else x


def recurring_blips(seed: int, n: int = 6000, dt: float = 300.0, anomalies: bool = True) -> Series:
    """A flat-ish metric with a cron job's blip every few points; anomalies: a blip many times larger, a new level."""
    rng = np.random.default_rng(seed)
    base = float(rng.uniform(1, 50))
    every = int(rng.integers(5, 60))
    height = base * float(rng.uniform(0.1, 1.0))
    start = int(rng.integers(0, n // 3))  # the job is introduced partway (a deploy), then recurs
    x = base + _noise(rng, n, base * float(rng.choice([0.0, 0.005, 0.02])))
    jitter = rng.integers(-1, 2, n) if rng.random() < 0.5 else np.zeros(n, dtype=int)
    idx = np.arange(start, n, every) + jitter[: len(range(start, n, every))]
    idx = idx[(idx >= 0) & (idx < n)]
    x[idx] += height * rng.uniform(0.8, 1.2, len(idx))
    events: list[Event] = []
    if anomalies:
        for j, s in enumerate(_positions(rng, n, int(rng.integers(1, 3)), lo=0.5)):
            if j % 2 == 0:  # a runaway job: one blip far beyond all others, for a few points
                e = s + int(rng.integers(1, 6))
                x[s:e] = base + height * float(rng.uniform(5, 20))
                events.append(Event("huge_blip", s, e))
            else:  # the baseline moves to a level never seen
                e = s + int(rng.integers(100, 400))
                x[s:e] += base * float(rng.uniform(0.5, 2.0)) + height
                events.append(Event("new_level", s, e))
    return Series(f"blips-{seed}", _t(n, dt), np.round(x, 3), events)


def gc_sawtooth(seed: int, n: int = 6000, dt: float = 60.0, anomalies: bool = True) -> Series:
    """Heap in use: climbs and drops at each collection (jittered period); anomalies: GC stops freeing, GC thrash."""
    rng = np.random.default_rng(seed)
    base = float(rng.uniform(100, 2000))
    amp = base * float(rng.uniform(0.1, 0.5))
    period = float(rng.uniform(15, 120))
    phase = np.cumsum(rng.uniform(0.6, 1.4, n) / period)  # collections at jittered intervals
    x = base + amp * (phase % 1.0)
    events: list[Event] = []
    if anomalies:
        for j, s in enumerate(_positions(rng, n, int(rng.integers(1, 3)), lo=0.4)):
            if j % 2 == 0:  # a leak: the floor after each collection creeps up, then a restart
                e = s + int(rng.integers(200, 800))
                x[s:e] += np.linspace(0, amp * float(rng.uniform(1.0, 3.0)), e - s)
                events.append(Event("heap_leak", s, e))
            else:  # thrash: the heap is pinned near its top, collections every point
                e = s + int(rng.integers(30, 200))
                x[s:e] = base + amp * float(rng.uniform(1.3, 2.0)) + rng.normal(0, amp * 0.05, e - s)
                events.append(Event("gc_thrash", s, e))
    x += _noise(rng, n, amp * 0.01)
    return Series(f"gc-saw-{seed}", _t(n, dt), np.round(x, 0), events)


def counter_resets(seed: int, n: int = 6000, dt: float = 300.0, anomalies: bool = True) -> Series:
    """A cumulative counter that resets at restarts (normal); anomaly: its rate multiplies for a while."""
    rng = np.random.default_rng(seed)
    rate = np.full(n, float(rng.uniform(5, 500)))
    hour = ((np.arange(n) * dt / 3600.0) + float(rng.uniform(0, 24))) % 24
    rate *= 1 + float(rng.uniform(0, 0.6)) * np.sin(2 * np.pi * (hour - 9) / 24)
    events: list[Event] = []
    if anomalies:
        for s in _positions(rng, n, int(rng.integers(1, 3)), lo=0.4):
            e = s + int(rng.integers(50, 300))
            rate[s:e] *= float(rng.uniform(3, 8))
            events.append(Event("rate_surge", s, e))
    inc = rng.poisson(rate).astype(float)
    resets = np.zeros(n, dtype=bool)
    resets[rng.choice(np.arange(100, n), int(rng.integers(2, 8)), replace=False)] = True
    x = np.empty(n)
    acc = 0.0
    for i in range(n):
        acc = inc[i] if resets[i] else acc + inc[i]
        x[i] = acc
    return Series(f"counter-{seed}", _t(n, dt), x, events)


def weekly_traffic(seed: int, n: int = 8064, dt: float = 300.0, anomalies: bool = True) -> Series:
    """Traffic with daily and weekly cycles and multiplicative noise; anomalies: a missing peak, an off-hours bump."""
    rng = np.random.default_rng(seed)
    t = _t(n, dt)
    hour = ((t - T0) / 3600.0 + float(rng.uniform(0, 24))) % 24
    dow = ((t - T0) // 86400 + int(rng.integers(7))) % 7
    daily = 1 + float(rng.uniform(0.3, 0.9)) * np.sin(2 * np.pi * (hour - 10) / 24)
    weekly = np.where(dow >= 5, float(rng.uniform(0.5, 0.95)), 1.0)
    level = float(rng.uniform(100, 20000))
    mean = level * daily * weekly
    events: list[Event] = []
    if anomalies:
        for j, s in enumerate(_positions(rng, n, int(rng.integers(1, 3)), lo=0.5)):
            day0 = s - int(hour[s] * 3600 / dt)
            if j % 2 == 0:  # the afternoon peak does not come (an upstream outage)
                s = day0 + int(float(rng.uniform(12, 15)) * 3600 / dt)
                e = s + int(rng.integers(12, 48))
                mean[s:e] *= float(rng.uniform(0.3, 0.6))
                events.append(Event("missing_peak", s, e))
            else:  # a bump at night (batch client, bot)
                s = day0 + int(float(rng.uniform(1, 4)) * 3600 / dt)
                e = s + int(rng.integers(6, 36))
                mean[s:e] += level * float(rng.uniform(0.5, 1.0))
                events.append(Event("night_bump", s, e))
    x = mean * rng.lognormal(0, float(rng.uniform(0.03, 0.12)), n)
    return Series(f"weekly-{seed}", t, np.round(x), events)


def heavy_latency(seed: int, n: int = 8000, dt: float = 60.0, anomalies: bool = True) -> Series:
    """Latency with Pareto-tailed outliers that are normal; anomalies: a sustained slowdown, an outlier storm."""
    rng = np.random.default_rng(seed)
    med = float(rng.uniform(20, 400))
    x = med * rng.lognormal(0, float(rng.uniform(0.1, 0.3)), n)
    rare = rng.random(n) < float(rng.uniform(0.001, 0.01))
    x[rare] *= 1 + rng.pareto(1.5, int(rare.sum())) * float(rng.uniform(2, 10))  # timeouts, retries: normal
    events: list[Event] = []
    if anomalies:
        for j, s in enumerate(_positions(rng, n, int(rng.integers(1, 3)), lo=0.4)):
            e = s + int(rng.integers(60, 300))
            if j % 2 == 0:  # a dependency slows down: the whole distribution moves
                x[s:e] *= float(rng.uniform(1.6, 3.0))
                events.append(Event("slowdown", s, e))
            else:  # outliers every few points instead of a few per thousand
                storm = rng.random(e - s) < 0.3
                x[s:e][storm] *= 1 + rng.pareto(1.5, int(storm.sum())) * 10
                events.append(Event("outlier_storm", s, e))
    return Series(f"latency-{seed}", _t(n, dt), np.round(x, 1), events)


def variance_regimes(seed: int, n: int = 6000, dt: float = 300.0, anomalies: bool = True) -> Series:
    """A metric alternating between calm and busy noise regimes; anomaly: swings far wider than any busy regime."""
    rng = np.random.default_rng(seed)
    level = float(rng.uniform(20, 200))
    sd_calm = level * float(rng.uniform(0.005, 0.03))
    sd = np.empty(n)
    i, busy = 0, False
    while i < n:
        run = int(rng.integers(50, 600))
        sd[i:i + run] = sd_calm * (float(rng.uniform(2, 4)) if busy else 1.0)
        busy, i = not busy, i + run
    events: list[Event] = []
    if anomalies:
        for s in _positions(rng, n, int(rng.integers(1, 3)), lo=0.4):
            e = s + int(rng.integers(40, 200))
            sd[s:e] = sd_calm * float(rng.uniform(12, 25))
            events.append(Event("wild_swings", s, e))
    x = level + rng.normal(0, 1, n) * sd
    return Series(f"variance-{seed}", _t(n, dt), _quantise(x, rng, sd_calm), events)


def batch_zeros(seed: int, n: int = 6000, dt: float = 300.0, anomalies: bool = True) -> Series:
    """Rows processed by a nightly batch: zero most of the day, a run of load at night; anomalies: a run at noon, a
    run several times larger than ever."""
    rng = np.random.default_rng(seed)
    per_day = int(86400 / dt)
    start_h = float(rng.uniform(0, 5))
    length = int(rng.integers(6, 36))
    load = float(rng.uniform(50, 5000))
    x = np.zeros(n)
    for d0 in range(0, n, per_day):
        s = d0 + int(start_h * 3600 / dt) + int(rng.integers(-2, 3))
        run = max(2, length + int(rng.integers(-3, 4)))
        x[max(0, s):s + run] = load * rng.uniform(0.7, 1.3, len(x[max(0, s):s + run]))
    events: list[Event] = []
    if anomalies:
        for j, s in enumerate(_positions(rng, n, int(rng.integers(1, 3)), lo=0.4)):
            d0 = s - s % per_day
            if j % 2 == 0:  # an unscheduled run at midday
                s = d0 + int(12 * 3600 / dt)
                e = s + length
                x[s:e] = load * rng.uniform(0.7, 1.3, e - s)
                events.append(Event("unscheduled_run", s, e))
            else:  # tonight's run carries a backlog many times the usual size
                s = d0 + int(start_h * 3600 / dt) + per_day
                if s + length >= n:
                    continue
                e = s + length
                x[s:e] = load * float(rng.uniform(4, 10)) * rng.uniform(0.9, 1.1, e - s)
                events.append(Event("backlog", s, e))
    return Series(f"batch-{seed}", _t(n, dt), np.round(x), events)


def spiky_cpu(seed: int, n: int = 4032, dt: float = 300.0, anomalies: bool = True) -> Series:
    """Cloud CPU % with a noisy low base and frequent short spikes that are normal; anomalies: a long plateau,
    a stretch of near-zero (the service stopped)."""
    rng = np.random.default_rng(seed)
    base = float(rng.uniform(1, 30))
    x = base + _noise(rng, n, base * float(rng.uniform(0.02, 0.15)))
    spikes = np.nonzero(rng.random(n) < float(rng.uniform(0.005, 0.03)))[0]
    for s in spikes:
        x[s:s + int(rng.integers(1, 4))] += float(rng.uniform(10, 60))
    events: list[Event] = []
    if anomalies:
        for j, s in enumerate(_positions(rng, n, int(rng.integers(1, 3)), lo=0.4)):
            e = s + int(rng.integers(24, 200))
            if j % 2 == 0:
                x[s:e] = float(rng.uniform(70, 98)) + _noise(rng, e - s, 2.0)
                events.append(Event("cpu_plateau", s, e))
            else:
                x[s:e] = float(rng.uniform(0, 0.5)) + np.abs(_noise(rng, e - s, 0.1))
                events.append(Event("cpu_stopped", s, e))
    x = np.clip(np.round(x / 0.002) * 0.002 if rng.random() < 0.5 else np.round(x, 1), 0, 100)
    return Series(f"spiky-cpu-{seed}", _t(n, dt), x, events)


def temperature(seed: int, n: int = 10000, dt: float = 300.0, anomalies: bool = True) -> Series:
    """A machine temperature wandering slowly (random walk pulled to a set point); anomaly: a failure's dip."""
    rng = np.random.default_rng(seed)
    target = float(rng.uniform(60, 95))
    sd = float(rng.uniform(0.2, 1.0))
    x = np.empty(n)
    v = target
    pull = float(rng.uniform(0.005, 0.05))
    for i in range(n):
        v += pull * (target - v) + rng.normal(0, sd)
        x[i] = v
    events: list[Event] = []
    if anomalies:
        for s in _positions(rng, n, int(rng.integers(1, 3)), lo=0.4):
            e = s + int(rng.integers(50, 300))
            depth = float(rng.uniform(4, 10)) * sd / np.sqrt(2 * pull)  # 4-10 of the wander's own deviations
            x[s:e] -= depth * np.sin(np.linspace(0, np.pi, e - s)) ** 0.5
            events.append(Event("failure_dip", s, e))
    return Series(f"temperature-{seed}", _t(n, dt), np.round(x, 2), events)


FAMILIES: dict[str, Callable[..., Series]] = {
    "blips": recurring_blips, "gc_saw": gc_sawtooth, "counter": counter_resets, "weekly": weekly_traffic,
    "latency": heavy_latency, "variance": variance_regimes, "batch": batch_zeros, "spiky_cpu": spiky_cpu,
    "temperature": temperature,
}


def corpus(seeds: int = 3, normal_seeds: int = 1, base: int = 0) -> list[tuple[str, Series]]:
    """`seeds` labelled series per family plus `normal_seeds` anomaly-free ones, tagged with their family."""
    out: list[tuple[str, Series]] = []
    for fam, gen in FAMILIES.items():
        for s in range(seeds):
            out.append((fam, gen(1_000_003 * base + 7_000_000 + 100 * len(out) + s)))
        for s in range(normal_seeds):
            out.append((fam, gen(1_000_003 * base + 7_050_000 + 100 * len(out) + s, anomalies=False)))
    return out
