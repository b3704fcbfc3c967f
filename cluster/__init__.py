"""Starting or joining Ray, runtime_env construction, the execution task (and its warm actor forms: the shared
`WarmHost` holding many versions' warm children, the express lane's `WarmExecutor`) and its sandbox, with the
host's warm-memory ledger. Imports only `core`."""
