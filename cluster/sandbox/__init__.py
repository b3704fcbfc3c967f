"""Sandboxed handler execution: warm, isolated child processes that run user handlers for the Ray task.

Owns the jail (bubblewrap: `runtime`, `jail`, `seccomp`, `cgroups`, `mode`), the child bootstrap
(stdlib-only), the supervisor protocol and its checks (`framing`, `protocol`), the measurements taken from
outside the child (`measure`), per-key uids and directories (`layout`) and the warm pool. Imports only `core`
(and the standard library); never `ray`.
"""

from .context import InvocationContext
from .mode import SandboxUnavailable
from .pool import SandboxPool, get_pool

__all__ = ["InvocationContext", "SandboxPool", "SandboxUnavailable", "get_pool"]
