"""Our streaming detector against the rolling z-score on the same labelled series, in one run.

    .venv/bin/python -m bench.detection.run [--seeds 12] [--n 15000] [--ops-seeds 4] [--more-seeds 3] [--base 0]

Three corpora: the synthetic generator (`generate.py`: seasonal, trending, heavy-tailed, injected events),
series shaped like real operations (`ops.py`: quantised CPU, idle-at-night traffic, bursty counts,
deploy-time shifts, memory leaks) and more of them (`ops_more.py`: recurring blips, GC sawtooth, counters
with resets, daily+weekly traffic, heavy-tailed latency, variance regimes, mostly-zero batch metrics,
spiky cloud CPU, wandering temperature). For each detector it reports the windowed NAB-like score
(`windowed.py`, best single threshold per detector over the whole corpus, and at the documented alarm
level 0.5) and the event precision/recall table (`score.py`) at that level. JSON lines, then a table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from analytics.detection.series import ALARM_SCORE, backtest_scores
from bench.detection.baseline import rolling_z_scores
from bench.detection.generate import Series, generate
from bench.detection.ops import corpus
from bench.detection.ops_more import corpus as more_corpus
from bench.detection.score import Result, score
from bench.detection.windowed import Labelled, best_threshold, corpus_score, labelled

WARMUP = 200  # points the precision/recall table ignores at the start of every series (both detectors)
Detector = Callable[[Series], np.ndarray]


def ours(s: Series) -> np.ndarray:
    """Scores of `cloudfn detect backtest` (StreamingSeriesDetector) for one series."""
    return np.fromiter(backtest_scores(zip(s.timestamps.tolist(), s.values.tolist(), strict=True)), float)


def zscore(s: Series) -> np.ndarray:
    """Scores of the rolling z-score baseline."""
    return rolling_z_scores(s.values)


def _pr(scores: list[np.ndarray], series: list[Series], threshold: float) -> dict[str, float]:
    total = Result()
    for sc, s in zip(scores, series, strict=True):
        total.add(score(sc >= threshold, s.events, warmup=WARMUP))
    return total.summary()


def main() -> None:
    """Run the benchmark and print JSON lines and a table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=12, help="synthetic labelled series")
    ap.add_argument("--n", type=int, default=15000, help="points per synthetic series")
    ap.add_argument("--normal-seeds", type=int, default=3, help="synthetic series with no anomaly at all")
    ap.add_argument("--ops-seeds", type=int, default=4, help="labelled series per operational family")
    ap.add_argument("--more-seeds", type=int, default=3, help="labelled series per `ops_more` family")
    ap.add_argument("--base", type=int, default=0, help="seed base: each base draws different series")
    args = ap.parse_args()
    b = 1_000_003 * args.base
    groups: dict[str, list[Series]] = {"synthetic": [generate(b + s, n=args.n) for s in range(args.seeds)]}
    groups["synthetic"] += [generate(b + 1000 + s, n=args.n, n_events=0) for s in range(args.normal_seeds)]
    for fam, s in corpus(args.ops_seeds, base=args.base):
        groups.setdefault(f"ops/{fam}", []).append(s)
    for fam, s in more_corpus(args.more_seeds, base=args.base):
        groups.setdefault(f"more/{fam}", []).append(s)
    detectors: dict[str, Detector] = {"ours": ours, "rolling-z": zscore}
    scores: dict[str, dict[str, list[np.ndarray]]] = {}
    secs: dict[str, float] = {}
    for name, fn in detectors.items():
        t0 = time.perf_counter()
        scores[name] = {g: [fn(s) for s in ss] for g, ss in groups.items()}
        secs[name] = time.perf_counter() - t0
    points = sum(len(s.values) for ss in groups.values() for s in ss)
    views = {"all": list(groups), "synthetic": ["synthetic"], "ops": [g for g in groups if g.startswith("ops/")],
             "more": [g for g in groups if g.startswith("more/")]}
    views.update({g: [g] for g in groups if g.startswith(("ops/", "more/"))})
    rows = []
    for view, gs in views.items():
        for name in detectors:
            items: list[Labelled] = [labelled(sc, s.events) for g in gs
                                     for sc, s in zip(scores[name][g], groups[g], strict=True)]
            best = best_threshold(items)
            at = corpus_score(items, ALARM_SCORE)
            pr = _pr([sc for g in gs for sc in scores[name][g]], [s for g in gs for s in groups[g]], ALARM_SCORE)
            row = {"view": view, "detector": name, "windowed_best": round(best["score"], 1),
                   "best_threshold": round(best["threshold"], 4), "windowed_at_0.5": round(at["score"], 1),
                   "tp": at["tp"], "fn": at["fn"], "fp": at["fp"], "precision": round(pr["precision"], 3),
                   "recall": round(pr["recall"], 3), "f1": round(pr["f1"], 3),
                   "fa_per_10k": round(pr["fa_per_10k"], 2), "median_delay": pr["median_delay"],
                   "series": sum(len(groups[g]) for g in gs), "windows": best["windows"]}
            rows.append(row)
            print(json.dumps(row))
    for name in detectors:
        print(json.dumps({"detector": name, "points": points, "us_per_point": round(1e6 * secs[name] / points, 1)}))
    print()
    print(f"{len(sum(groups.values(), []))} series, {points} points; windowed = NAB-like score (0 never alarm, "
          f"100 perfect); P/R/F1 and FA/10k at score >= {ALARM_SCORE}")
    print(f"{'view':16} {'detector':10} {'best':>6} {'@thr':>7} {'@0.5':>6} {'TP':>4} {'FN':>4} {'FP':>5} "
          f"{'prec':>5} {'recall':>6} {'F1':>5} {'FA/10k':>7}")
    for r in rows:
        print(f"{r['view']:16} {r['detector']:10} {r['windowed_best']:6.1f} {r['best_threshold']:7.4f} "
              f"{r['windowed_at_0.5']:6.1f} {int(r['tp']):4d} {int(r['fn']):4d} {int(r['fp']):5d} "
              f"{r['precision']:5.2f} {r['recall']:6.2f} {r['f1']:5.2f} {r['fa_per_10k']:7.2f}")
    print(" ".join(f"{n}: {1e6 * secs[n] / points:.1f} us/point" for n in detectors))


if __name__ == "__main__":
    main()
