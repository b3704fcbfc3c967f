"""Sandboxed handler execution: warm, isolated child processes that run user handlers for the Ray task.

Owns the child bootstrap (stdlib-only, drops privileges before importing user code), the supervisor
protocol, per-key uids and directories, limits (rlimits, optional cgroup v1), namespaces and the warm
pool. Imports only `core` (and the standard library); never `ray`.
"""

from .context import InvocationContext
from .pool import SandboxPool, get_pool

__all__ = ["InvocationContext", "SandboxPool", "get_pool"]
