"""Anomaly detection models (plain Python, no Ray): outliers, time series, drift, version regressions."""

from analytics.detection.anomaly import Anomaly
from analytics.detection.backtest import read_backtest_csv
from analytics.detection.function import FunctionDetectors
from analytics.detection.series import StreamingSeriesDetector, backtest_scores

__all__ = ["Anomaly", "FunctionDetectors", "StreamingSeriesDetector", "backtest_scores", "read_backtest_csv"]
