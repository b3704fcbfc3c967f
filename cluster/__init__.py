"""Starting or joining Ray, runtime_env construction, the execution task (and its warm actor form, the express
lane's `WarmExecutor`) and its sandbox. Imports only `core`."""
