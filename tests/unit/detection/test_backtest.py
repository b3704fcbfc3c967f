"""The backtest path: causal, one score per row in [0, 1], strict CSV reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analytics.detection import StreamingSeriesDetector, backtest_scores, read_backtest_csv


def _series(n: int, seed: int = 3) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    t = 1_600_000_000 + 300.0 * np.arange(n)
    x = 50 + 10 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 1, n)
    x[n // 2] += 25
    x[3 * n // 4:] += 8
    return list(zip(t.tolist(), x.tolist(), strict=True))


def test_backtest_is_causal_and_gives_one_score_per_row() -> None:
    rows = _series(2000)
    full = list(backtest_scores(rows))
    assert len(full) == len(rows)
    assert all(0.0 <= s <= 1.0 for s in full)
    for k in (1, 10, 777, 1000, 1500):
        assert list(backtest_scores(rows[:k])) == full[:k]


def test_backtest_scores_the_injected_anomalies_highest() -> None:
    rows = _series(2000)
    s = np.array(list(backtest_scores(rows)))
    assert s[1000] >= 0.5
    assert s[1500:1510].max() >= 0.5
    normal = np.r_[s[300:990], s[1010:1490]]
    assert (normal >= 0.5).sum() <= 1


def test_update_skips_non_finite_values() -> None:
    det = StreamingSeriesDetector()
    assert det.update(0.0, float("nan")) == 0.0 and det.n == 0


def test_read_backtest_csv_accepts_iso_and_epoch(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("timestamp,value\n2024-01-01T00:00:00Z,1.5\n2024-01-01 00:05:00,2\n1704067800,3e0\n\n")
    assert read_backtest_csv(p) == [(1704067200.0, 1.5), (1704067500.0, 2.0), (1704067800.0, 3.0)]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("timestamp,value\n1,2\n2,abc\n", "line 3"),
        ("timestamp,value\n1,2\nyesterday,4\n", "line 3"),
        ("timestamp,value\n1,2\n3,4\n5\n", "line 4"),
        ("timestamp,value\n1,nan\n", "line 2"),
        ("time,val\n1,2\n", "line 1"),
    ],
)
def test_read_backtest_csv_names_the_bad_row(tmp_path: Path, body: str, needle: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(ValueError, match=needle):
        read_backtest_csv(p)


def test_backtest_lines_print_one_score_per_row(tmp_path: Path) -> None:
    from analytics.detection.backtest import backtest_lines

    rows = _series(300)
    p = tmp_path / "s.csv"
    p.write_text("timestamp,value\n" + "".join(f"{t},{v!r}\n" for t, v in rows))
    lines = list(backtest_lines(p))
    assert len(lines) == 300 and all(0.0 <= float(s) <= 1.0 for s in lines)
