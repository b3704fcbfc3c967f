"""Results without polling: task reads, batch lookups and long-poll waits woken by committed results.
Imports `tasks` and `core` only."""
