"""Per-execution outlier models side by side: robust screen alone, + alibi Mahalanobis, + alibi IForest.

    .venv/bin/python -m bench.detection.outliers
Normal executions have log-normal input sizes with duration, CPU and memory growing with the input;
injected are duration spikes, memory spikes and CPU-bound executions; "benign" executions have rare
but consistent large inputs (proportionally slower) and should not be flagged.
"""

from __future__ import annotations

import json
import time

import numpy as np

from analytics.detection import FunctionDetectors
from core.models import MetricRecord


def _rec(i: int, rng: np.random.Generator, kind: str) -> MetricRecord:
    size = float(rng.lognormal(8, 0.3)) * (8.0 if kind == "benign" else 1.0)
    dur = (5 + size / 500) * float(rng.lognormal(0, 0.1))
    cpu = dur * 0.8 * float(rng.lognormal(0, 0.05))
    mem = 40 + size / 2000 + float(rng.normal(0, 0.5))
    if kind == "duration":
        dur *= 6
    elif kind == "memory":
        mem *= 3
    elif kind == "cpu":
        cpu = dur * 3
    t = 1e9 + i
    return MetricRecord(f"t{i}", "default", "f", 1, "succeeded", t - dur / 1e3, t, dur, cpu, mem, 1.0, False,
                        None, int(size), 200)


def run(model: str, seed: int) -> dict[str, float]:
    """One function's stream: 300 warm-up (incl. ~2% benign), then 4000 scored with ~1% injected, ~1% benign."""
    rng = np.random.default_rng(seed)
    fd = FunctionDetectors("f", outlier_model=model)
    counts = {k: [0, 0] for k in ("normal", "benign", "duration", "memory", "cpu")}
    cost = 0.0
    for i in range(4300):
        u = rng.random()
        if u < 0.98:
            kind = "normal"
        elif u < 0.99 or i < 300:  # benign large inputs occur in the warm-up history too
            kind = "benign"
        else:
            kind = str(rng.choice(["duration", "memory", "cpu"]))
        rec = _rec(i, rng, kind)
        t0 = time.perf_counter()
        found = fd.observe(rec)
        cost += time.perf_counter() - t0
        if i >= 300:
            counts[kind][0] += 1
            counts[kind][1] += any(a.kind == "outlier" for a in found)
    out = {f"{k}_flagged": v[1] / max(v[0], 1) for k, v in counts.items()}
    out["us_per_observe"] = 1e6 * cost / 4300
    return out


def main() -> None:
    """Average over seeds, print a table and JSON lines."""
    import alibi_detect.od  # noqa: F401  (import cost is not per-observe cost)

    print(f"{'model':12} {'normal FP':>9} {'benign FP':>9} {'duration':>8} {'memory':>7} {'cpu':>6} {'us/obs':>7}")
    for model in ("none", "mahalanobis", "iforest"):
        rows = [run(model, s) for s in range(4)]
        avg = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        print(f"{model:12} {avg['normal_flagged']:9.4f} {avg['benign_flagged']:9.3f} {avg['duration_flagged']:8.2f} "
              f"{avg['memory_flagged']:7.2f} {avg['cpu_flagged']:6.2f} {avg['us_per_observe']:7.1f}")
        print(json.dumps({"model": model, **avg}))


if __name__ == "__main__":
    main()
