"""`python -m analytics.detection FILE.csv`: the backtest without the CLI (one score per data row)."""

import sys

from analytics.detection.backtest import backtest_lines

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m analytics.detection FILE.csv")
    try:
        lines = list(backtest_lines(sys.argv[1]))
    except (OSError, ValueError) as e:
        sys.exit(f"error: {e}")
    sys.stdout.write("".join(f"{line}\n" for line in lines))
