"""What a child is started with: its environment, its rlimits and the init message for the bootstrap."""

from __future__ import annotations

import math
import os
import resource
from typing import Any

from core.models import NODE_RUNTIME, FunctionConfig

from .context import InvocationContext
from .layout import KeyDirs

MiB = 1 << 20
# What Node.js itself holds before the handler opens or starts anything (measured on Node 20: 21 fds, 11
# threads: V8's platform workers, libuv's pool, the signal and inspector threads), allowed on top of the
# function's own `max_open_files` and `max_processes` so that the same config means the same for both runtimes.
NODE_RUNTIME_FDS = 32
NODE_RUNTIME_THREADS = 16


def cpu_limit_s(config: FunctionConfig) -> float:
    """Per-invocation CPU allowance."""
    return config.cpu_s if config.cpu_s is not None else config.timeout_s


def cpu_hard_s(config: FunctionConfig) -> int:
    """RLIMIT_CPU hard limit for a child's whole life; the child retires before a call could cross it."""
    return int(math.ceil(max(cpu_limit_s(config) * 10, cpu_limit_s(config) + 30)))


def child_env(config: FunctionConfig, dirs: KeyDirs, handler: str, ctx: InvocationContext) -> dict[str, str]:
    """The function's own env and Lambda's reserved variables; the bootstrap sets them after it has started
    (nothing here reaches the dynamic loader or the interpreter's start-up)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC", "TMPDIR": "/tmp",
           "HOME": str(dirs.work)}
    env.update(config.env)
    env.update({
        "AWS_LAMBDA_FUNCTION_NAME": ctx.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": ctx.function_version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": ctx.log_group_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": ctx.log_stream_name,
        "LAMBDA_TASK_ROOT": str(dirs.code),
        "_HANDLER": handler,
    })
    return env


def pids_limit(config: FunctionConfig) -> int:
    """The child's cgroup pids ceiling (threads count): the function's processes, the jail's own, and
    Node.js's runtime threads."""
    return config.max_processes + 8 + (NODE_RUNTIME_THREADS if config.runtime == NODE_RUNTIME else 0)


def cgroup_memory_bytes(config: FunctionConfig) -> int:
    """The child's cgroup memory ceiling: its memory limit plus its tmpfs (pages there are charged to it)."""
    return config.memory_mb * MiB + 2 * config.max_file_mb * MiB + 32 * MiB


def rlimits(config: FunctionConfig) -> dict[str, list[int]]:
    """Resource limits the bootstrap applies to itself before importing user code (Node.js cannot: the
    supervisor applies them before the jail starts, without RLIMIT_AS, under which V8 does not start; its
    memory is bounded by the cgroup and V8's own heap limit, see `node_flags`)."""
    inf = resource.RLIM_INFINITY
    limits = {
        "RLIMIT_AS": [config.memory_mb * MiB] * 2,
        "RLIMIT_CPU": [cpu_hard_s(config)] * 2,
        "RLIMIT_NOFILE": [config.max_open_files] * 2,
        "RLIMIT_FSIZE": [config.max_file_mb * MiB] * 2,
        "RLIMIT_CORE": [0, 0],
        "RLIMIT_STACK": [8 * MiB, 8 * MiB],
    }
    del inf
    if config.runtime == NODE_RUNTIME:
        del limits["RLIMIT_AS"]
        limits["RLIMIT_NOFILE"] = [config.max_open_files + NODE_RUNTIME_FDS] * 2
    return limits


def node_flags(config: FunctionConfig) -> list[str]:
    """V8's heap sized from the function's memory the way Lambda's Node.js runtime does (a tenth for the
    young generation, the rest for the old one), so that V8 collects before the cgroup's ceiling."""
    semi = max(1, min(config.memory_mb // 20, 64))
    return [f"--max-semi-space-size={semi}", f"--max-old-space-size={max(16, config.memory_mb * 9 // 10)}"]


def init_message(config: FunctionConfig, dirs: KeyDirs, handler: str, ctx: InvocationContext, *,
                 check_only: bool, jailed: bool) -> dict[str, Any]:
    """The bootstrap's init spec."""
    sys_path = [str(dirs.code)] + ([str(dirs.deps)] if dirs.deps else [])
    return {
        "env": child_env(config, dirs, handler, ctx),
        "uid": dirs.uid,
        "gid": dirs.gid,
        "work_dir": str(dirs.work),
        "handler": handler,
        "runtime": config.runtime,
        "code_dir": str(dirs.code),
        "sys_path": sys_path,
        "parent_pid": 0 if jailed else os.getpid(),  # in the jail the parent is bwrap's reaper
        "rlimits": rlimits(config),
        "cpu_s": cpu_limit_s(config),
        "max_output_bytes": config.max_output_kb * 1024,
        "check_only": check_only,
    }
