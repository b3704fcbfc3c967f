"""Dispatch: per-function queues and concurrency, per-tenant quotas, runners (Ray tasks, the bridge, express lanes)
and lanes. Imports `write`, `catalog`, `core`, `cluster`; never `http`, `control`, `feed` or the platform."""
