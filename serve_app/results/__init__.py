"""Results without polling: task reads, batch lookups and long-poll waits woken by committed results.
Imports `core` only (the task repository is `core.db.tasks`)."""
