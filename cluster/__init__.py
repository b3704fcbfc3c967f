"""Starting or joining Ray, runtime_env construction, the execution task and its sandbox. Imports only `core`."""
