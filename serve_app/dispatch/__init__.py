"""Dispatch: per-function queues and concurrency, runners (Ray tasks, the bridge, express lanes) and lanes.
Imports `write`, `catalog`, `core`, `cluster`; never `http`, `control`, `feed` or the platform."""
