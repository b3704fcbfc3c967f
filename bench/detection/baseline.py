"""The rolling z-score baseline: trailing 2,000 points, score z^2 / (z^2 + 9) (0.5 at |z| = 3)."""

from __future__ import annotations

import numpy as np


def rolling_z_scores(values: np.ndarray, window: int = 2000) -> np.ndarray:
    """Causal score per point from the mean and standard deviation of the previous `window` points."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    c1 = np.r_[0.0, np.cumsum(x)]
    c2 = np.r_[0.0, np.cumsum(x * x)]
    i = np.arange(n)
    lo = np.maximum(0, i - window)
    k = (i - lo).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c1[i] - c1[lo]) / k
        var = np.maximum((c2[i] - c2[lo]) / k - mean * mean, 0.0)
        z2 = (x - mean) ** 2 / var
        s = z2 / (z2 + 9.0)
    s[np.isnan(s)] = 0.0  # no history, or a flat history and the same value
    s[np.isinf(z2)] = 1.0
    s[k < 2] = 0.0
    return s
