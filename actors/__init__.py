"""Long-lived Ray actors (metrics sink, detectors, alert dispatcher). Imports `analytics`, `cluster`, `core`."""
