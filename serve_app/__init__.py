"""The API replica: the Ray Serve deployment, the FastAPI app over one `Platform`, and the CLI. Never imports
`panel_dashboard`.

An invocation's path, in package order: `http` (the app, dependency providers, routers, the pure-ASGI fast
paths, the one error mapping) → `accept` (admission: the sandbox gate; the task row and idempotency are still
`Platform.invoke`'s) → `dispatch` (per-function queues, runners, express lanes) → `write` (the group-commit
writer) → `feed` (lake, detectors, completion destinations). `results` answers reads and waits, `catalog` knows
the functions' versions, `control` holds the control-plane services (deploy parsing, pipelines); the task
repository is `core.db.tasks`. `replicas` lets several API replicas share the work (leases, each function's
home replica, hand-offs and ended-task notices over LISTEN/NOTIFY). `platform` is the composition root,
`deployment` the Serve deployment, and `cli` (the command line and the launcher) talks to the app over HTTP only
and is imported by none of the others.

The hot path, for whoever tunes it: the dispatcher runs each batch through a runner (`dispatch.runners`: the shared
warm host, Ray tasks in the version's runtime_env, the bridge, or the express lane, one interface); `POST
…/invocations` is answered by a pure-ASGI fast path (`http.fast_invoke`) before FastAPI's routing, as are task
reads (`http.fast_reads`); the group-commit writer owns one psycopg connection and sends each flush (all new task
rows, running marks, results and metric rows, each kind as one `json_to_recordset` statement) as one pipelined
transaction; Serve's per-request access log is off.
"""
