"""Labelled series shaped like real operations: quantised CPU, idle-at-night traffic, bursts, deploys, leaks.

Every generator draws its shape, noise and anomalies from its seed; normal behaviour includes what real
series do and a naive detector pages for (regime switches between familiar levels, bursts, quiet nights,
small deploy shifts, GC sawtooth). Nothing here is copied from any public benchmark.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.detection.generate import Event, Series

T0 = 1_700_000_000.0


def _t(n: int, dt: float) -> np.ndarray:
    return T0 + dt * np.arange(n)


def _positions(rng: np.random.Generator, n: int, k: int, lo: float = 0.3) -> list[int]:
    """`k` well separated anomaly onsets after the first `lo` share of the series."""
    start = int(lo * n)
    gap = (n - start) // (k + 1)
    return [start + gap * (j + 1) + int(rng.integers(-gap // 4, gap // 4 + 1)) for j in range(k)]


def _noise(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Noise of a seed-drawn shape (normal, Laplace or Student-t3) with standard deviation about `scale`."""
    kind = int(rng.integers(3))
    if kind == 0:
        return rng.normal(0, scale, n)
    if kind == 1:
        return rng.laplace(0, scale / np.sqrt(2), n)
    return rng.standard_t(3, n) * scale / np.sqrt(3)


def quantised_cpu(seed: int, n: int = 4032, dt: float = 300.0, anomalies: bool = True) -> Series:
    """CPU % rounded to a quantum, switching between a few familiar levels; anomalies: saturation, a new level."""
    rng = np.random.default_rng(seed)
    levels = np.sort(rng.uniform(2, 45, int(rng.integers(2, 6))))
    quantum = float(rng.choice([1.0, 0.5, 0.1]))
    noise = float(rng.uniform(0.3, 1.5))
    x = np.empty(n)
    state, i = 0, 0
    while i < n:  # regime switches every few hours
        run = int(rng.geometric(1 / float(rng.uniform(30, 200))))
        x[i:i + run] = levels[state]
        state = int(rng.integers(len(levels)))
        i += run
    x += _noise(rng, n, noise) + np.where(rng.random(n) < 0.01, rng.exponential(4, n), 0.0)
    events: list[Event] = []
    if anomalies:
        for j, s in enumerate(_positions(rng, n, int(rng.integers(1, 3)))):
            if j % 2 == 0:  # runaway process: pinned near 100 % for a while
                e = s + int(rng.integers(6, 40))
                x[s:e] = rng.uniform(92, 100, e - s)
            else:  # a new, never seen level that lasts
                e = s + int(rng.integers(150, 400))
                x[s:e] = levels[-1] + float(rng.uniform(12, 35)) + _noise(rng, e - s, noise)
            events.append(Event("cpu_pinned" if j % 2 == 0 else "cpu_new_level", s, e))
    x = np.clip(np.round(x / quantum) * quantum, 0, 100)
    return Series(f"cpu-q{quantum:g}-{seed}", _t(n, dt), x, events)


def idle_night(seed: int, n: int = 8064, dt: float = 300.0, anomalies: bool = True) -> Series:
    """Requests per 5 min with a daily cycle and near-zero nights; anomalies: a daytime outage, a night surge."""
    rng = np.random.default_rng(seed)
    t = _t(n, dt)
    hour = ((t - T0) / 3600.0 + float(rng.uniform(0, 24))) % 24
    day = np.clip(np.sin(np.pi * (hour - 7) / 14), 0, None) ** 1.5  # 07:00-21:00, zero at night
    peak = float(rng.uniform(50, 400))
    weekend = ((t - T0) // 86400 % 7 >= 5) * float(rng.uniform(0.3, 0.9))
    lam = peak * day * (1 - weekend) + float(rng.uniform(0, 1.5))
    events: list[Event] = []
    if anomalies:
        for j, s in enumerate(_positions(rng, n, int(rng.integers(1, 3)))):
            if j % 2 == 0:  # outage: traffic drops to nothing during the day
                s = s - int((hour[s] - 13) * 3600 / dt)  # move the onset to early afternoon
                e = s + int(rng.integers(6, 30))
                lam[s:e] = 0.05
                events.append(Event("outage", s, e))
            else:  # a surge (crawler, retry storm) at a quiet hour
                s = s - int((hour[s] - 2) * 3600 / dt) % int(86400 / dt)
                e = s + int(rng.integers(10, 40))
                lam[s:e] += peak * float(rng.uniform(0.5, 1.0))
                events.append(Event("night_surge", s, e))
    return Series(f"idle-night-{seed}", t, rng.poisson(lam).astype(float), events)


def bursty(seed: int, n: int = 6000, dt: float = 60.0, anomalies: bool = True) -> Series:
    """Request counts per minute with frequent heavy-tailed bursts; anomalies: a sustained rate rise, a storm."""
    rng = np.random.default_rng(seed)
    base = float(rng.uniform(5, 80))
    lam = np.full(n, base)
    for b in np.nonzero(rng.random(n) < 0.02)[0]:  # normal bursts: short, Pareto-sized
        lam[b:b + int(rng.integers(1, 4))] += base * min(float(rng.pareto(2.5)) * 1.5, 6.0)
    events: list[Event] = []
    if anomalies:
        for j, s in enumerate(_positions(rng, n, int(rng.integers(1, 3)))):
            if j % 2 == 0:  # sustained 2.5-4x rate (a client stuck in a loop)
                e = s + int(rng.integers(60, 240))
                lam[s:e] *= float(rng.uniform(2.5, 4.0))
            else:  # a storm far beyond any normal burst
                e = s + int(rng.integers(3, 10))
                lam[s:e] += base * float(rng.uniform(15, 25))
            events.append(Event("sustained_rate" if j % 2 == 0 else "storm", s, e))
    return Series(f"bursty-{seed}", _t(n, dt), rng.poisson(lam).astype(float), events)


def deploy_latency(seed: int, n: int = 6000, dt: float = 300.0, anomalies: bool = True) -> Series:
    """p95 latency (log-normal noise) with small shifts at every deploy; anomaly: a deploy that regresses badly."""
    rng = np.random.default_rng(seed)
    level = np.full(n, float(rng.uniform(40, 300)))
    deploys = np.sort(rng.choice(np.arange(200, n - 50), int(rng.integers(4, 9)), replace=False))
    for d in deploys:  # normal deploys move the level by a few percent
        level[d:] *= float(rng.uniform(0.93, 1.07))
    sigma = float(rng.uniform(0.05, 0.15))
    events: list[Event] = []
    if anomalies:
        for s in _positions(rng, n, 1, lo=0.4):
            e = s + int(rng.integers(100, 500))  # rolled back after a while
            level[s:e] *= float(rng.uniform(1.5, 2.2))
            events.append(Event("bad_deploy", s, e))
    x = level * rng.lognormal(0, sigma, n)
    return Series(f"deploy-latency-{seed}", _t(n, dt), np.round(x, 1), events)


def memory_leak(seed: int, n: int = 6000, dt: float = 300.0, anomalies: bool = True) -> Series:
    """Resident memory (MB) with a GC sawtooth or a daily cycle; anomaly: a leak growing until a restart."""
    rng = np.random.default_rng(seed)
    base = float(rng.uniform(200, 1500))
    period = int(rng.integers(20, 80))
    saw = (np.arange(n) % period) / period * base * float(rng.uniform(0.0, 0.05))
    daily = base * float(rng.choice([0.0, 0.02])) * np.sin(2 * np.pi * np.arange(n) * dt / 86400)
    x = base + saw + daily + _noise(rng, n, base * float(rng.uniform(0.002, 0.008)))
    events: list[Event] = []
    if anomalies:
        for s in _positions(rng, n, 1, lo=0.4):
            e = min(n, s + int(rng.integers(300, 900)))
            growth = base * float(rng.uniform(0.1, 0.8))
            shape = float(rng.choice([0.5, 1.0, 2.0]))  # decelerating, steady or accelerating growth
            x[s:e] += growth * np.linspace(0, 1, e - s) ** shape  # then the process restarts: back to normal
            events.append(Event("memory_leak", s, e))
    return Series(f"memory-leak-{seed}", _t(n, dt), np.round(x, 0), events)


FAMILIES: dict[str, Callable[..., Series]] = {
    "cpu": quantised_cpu, "idle_night": idle_night, "bursty": bursty, "deploy": deploy_latency,
    "leak": memory_leak,
}


def corpus(seeds: int = 4, normal_seeds: int = 1, base: int = 0) -> list[tuple[str, Series]]:
    """`seeds` labelled series per family plus `normal_seeds` anomaly-free ones, tagged with their family.

    `base` shifts every seed, so each base is a different draw of the same families.
    """
    out: list[tuple[str, Series]] = []
    for fam, gen in FAMILIES.items():
        for s in range(seeds):
            out.append((fam, gen(1_000_003 * base + 100 * len(out) + s)))
        for s in range(normal_seeds):
            out.append((fam, gen(1_000_003 * base + 50_000 + 100 * len(out) + s, anomalies=False)))
    return out
