"""The windowed, NAB-like score: early first alarms in a window earn, missed windows and stray alarms cost.

Rules (issue 11): each labelled window is where an operator wants to hear about the anomaly. Per series,
every point scoring at or above the threshold is an alarm. The first alarm inside a window earns
`scaled_sigmoid(position)` (up to ~+1, more the earlier in the window); later alarms in that window earn
nothing; a window without an alarm costs -1; an alarm outside every window costs 0.11 (less just after a
window, as the sigmoid of its distance past the window's end); alarms in a series' probationary start are
ignored. One threshold for the whole corpus (the best one per detector); the sum is normalised so that
never alarming scores 0 and a perfect detector 100. Windows follow the usual convention: 10 % of the
series length shared among its anomalies, centred on each onset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.detection.generate import Event

A_TP, A_FP, A_FN = 1.0, 0.11, 1.0
PROBATION_SHARE = 0.15


def scaled_sigmoid(pos: np.ndarray) -> np.ndarray:
    """2 * sigmoid(-5 * pos) - 1: +0.987 at a window's start (-1), 0 at its end, towards -1 after; -1 past 3."""
    return np.where(pos > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * pos)) - 1.0)


@dataclass
class Labelled:
    """One series' scores with its windows ([start, end] inclusive) and probation length."""

    scores: np.ndarray
    windows: list[tuple[int, int]]
    probation: int


def windows_for(n: int, events: list[Event], share: float = 0.1) -> list[tuple[int, int]]:
    """Windows of `share * n / len(events)` points centred on each onset, merged where they overlap."""
    if not events:
        return []
    w = max(2, int(share * n / len(events)))
    out: list[tuple[int, int]] = []
    for ev in sorted(events, key=lambda e: e.start):
        lo, hi = max(0, ev.start - w // 2), min(n - 1, ev.start + w // 2)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def labelled(scores: np.ndarray, events: list[Event]) -> Labelled:
    """Attach windows and the probationary length to one series' scores."""
    n = len(scores)
    return Labelled(np.asarray(scores, dtype=float), windows_for(n, events), int(PROBATION_SHARE * n))


def raw_score(item: Labelled, threshold: float) -> tuple[float, int, int, int]:
    """(raw score, true positives, false negatives, false positives) of one series at `threshold`."""
    alarms = np.nonzero(item.scores >= threshold)[0]
    alarms = alarms[alarms >= item.probation]
    total, tp, fn = 0.0, 0, 0
    inside = np.zeros(len(alarms), dtype=bool)
    for lo, hi in item.windows:
        a, b = np.searchsorted(alarms, lo), np.searchsorted(alarms, hi, side="right")
        inside[a:b] = True
        if b > a:
            length = hi - lo + 1
            pos = -(hi - alarms[a] + 1) / length
            total += A_TP * float(scaled_sigmoid(np.array([pos]))[0])
            tp += 1
        else:
            total -= A_FN
            fn += 1
    stray = alarms[~inside]
    if len(stray):
        ends = np.array([hi for _, hi in item.windows], dtype=float)
        lens = np.array([hi - lo + 1 for lo, hi in item.windows], dtype=float)
        k = np.searchsorted(ends, stray) - 1  # the last window ending before each stray alarm
        cost = np.full(len(stray), -A_FP)
        after = k >= 0
        if after.any():
            pos = (stray[after] - ends[k[after]]) / lens[k[after]]
            cost[after] = A_FP * scaled_sigmoid(pos)
        total += float(cost.sum())
    return total, tp, fn, len(stray)


def corpus_score(items: list[Labelled], threshold: float) -> dict[str, float]:
    """Normalised score (0 = never alarm, 100 = perfect) of a corpus at one threshold, with its counts."""
    raw = tp = fn = fp = 0.0
    n_windows = sum(len(i.windows) for i in items)
    for it in items:
        r, a, b, c = raw_score(it, threshold)
        raw, tp, fn, fp = raw + r, tp + a, fn + b, fp + c
    null = -A_FN * n_windows
    perfect = A_TP * float(scaled_sigmoid(np.array([-1.0]))[0]) * n_windows
    norm = 100.0 * (raw - null) / (perfect - null) if perfect > null else 0.0
    return {"score": norm, "threshold": threshold, "tp": tp, "fn": fn, "fp": fp, "windows": n_windows}


def best_threshold(items: list[Labelled], candidates: int = 400) -> dict[str, float]:
    """The corpus score at the detector's best single threshold (searched over its own score quantiles).

    A threshold above every score (never alarm, 0 by construction) is a candidate: a detector whose
    highest scores are tied among many false alarms scores 0, not below.
    """
    allv = np.concatenate([i.scores[i.probation:] for i in items])
    qs = 1.0 - np.geomspace(1e-5, 0.2, candidates)
    top = float(allv.max()) if len(allv) else 0.0
    never = np.nextafter(top, math.inf) if top > 0 else 1.0
    cands = np.unique(np.r_[np.quantile(allv, qs), np.sort(np.unique(allv))[-200:], never])
    best: dict[str, float] = {"score": -math.inf}
    for c in cands:
        if c <= 0:
            continue
        r = corpus_score(items, float(c))
        if r["score"] > best["score"]:
            best = r
    return best
