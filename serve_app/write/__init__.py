"""The group-commit writer: task rows, running marks, results and metrics, one pipelined transaction per
flush. Imports `results` (to wake waiters) and `core` only."""
