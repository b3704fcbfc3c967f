"""Batch jobs over the metrics lake, runnable as `python -m analytics.jobs.<name>` (no Ray import)."""
