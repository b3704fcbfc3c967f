"""Benchmark of the streaming time-series detector against a rolling z-score baseline."""
