"""Several API replicas over one database: this replica's lease and view of the live replicas, each function's
home replica, and the notices (PostgreSQL LISTEN/NOTIFY) that carry hand-offs and ended tasks between them.
Imports `write` (the channel names) and `core`; never the platform, `http`, `dispatch` or `control`."""
