"""What a child is started with: its environment, its rlimits and the init message for the bootstrap."""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path
from typing import Any

from core.models import FunctionConfig

from .context import InvocationContext
from .layout import KeyDirs

MiB = 1 << 20
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC"}
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm")
NEVER_HIDE = {"/", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/var"}
PROJECT_DIR = Path(__file__).resolve().parents[2]


def cpu_limit_s(config: FunctionConfig) -> float:
    """Per-invocation CPU allowance."""
    return config.cpu_s if config.cpu_s is not None else config.timeout_s


def cpu_hard_s(config: FunctionConfig) -> int:
    """RLIMIT_CPU hard limit for a child's whole life; the child retires before a call could cross it."""
    return int(math.ceil(max(cpu_limit_s(config) * 10, cpu_limit_s(config) + 30)))


def child_env(config: FunctionConfig, dirs: KeyDirs, handler: str, ctx: InvocationContext) -> dict[str, str]:
    """Only the function's own env, a minimal base and Lambda's reserved variables."""
    env = {**BASE_ENV, "HOME": str(dirs.work), "TMPDIR": "/tmp"}
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


def rlimits(config: FunctionConfig, root: bool) -> dict[str, list[int]]:
    """Resource limits the bootstrap applies to itself before importing user code."""
    inf = resource.RLIM_INFINITY
    limits = {
        "RLIMIT_AS": [config.memory_mb * MiB] * 2,
        "RLIMIT_CPU": [cpu_hard_s(config)] * 2,
        "RLIMIT_NOFILE": [config.max_open_files] * 2,
        "RLIMIT_FSIZE": [config.max_file_mb * MiB] * 2,
        "RLIMIT_CORE": [0, 0],
        "RLIMIT_STACK": [8 * MiB, 8 * MiB],
    }
    if root:  # per-uid counter: only meaningful for a uid of our own
        limits["RLIMIT_NPROC"] = [config.max_processes] * 2
    del inf
    return limits


def hidden_paths() -> list[str]:
    """Trees a namespaced child sees as empty: scratch dirs, the platform's home, Ray's and our state."""
    paths = [*SCRATCH, str(Path.home()), "/root", str(PROJECT_DIR)]
    for var in ("RAY_TMPDIR", "CLOUDFN_HOME", "VIRTUAL_ENV"):
        if os.environ.get(var):
            paths.append(os.environ[var])
    paths += [p for p in os.environ.get("CLOUDFN_SANDBOX_HIDE", "").split(":") if p]
    out = []
    for p in paths:
        real = os.path.realpath(p)
        if real not in NEVER_HIDE and real not in out:
            out.append(real)
    return out


def init_message(config: FunctionConfig, dirs: KeyDirs, handler: str, *, check_only: bool) -> dict[str, Any]:
    """The bootstrap's init spec."""
    sys_path = [str(dirs.code)] + ([str(dirs.deps)] if dirs.deps else [])
    root = os.geteuid() == 0
    return {
        "uid": dirs.uid,
        "gid": dirs.gid,
        "work_dir": str(dirs.work),
        "handler": handler,
        "sys_path": sys_path,
        "expose": sys_path,
        "hide": hidden_paths(),
        "scratch": list(SCRATCH),
        "tmp_mb": config.max_file_mb,
        "network": config.network,
        "parent_pid": os.getpid(),
        "rlimits": rlimits(config, root),
        "cpu_s": cpu_limit_s(config),
        "max_output_bytes": config.max_output_kb * 1024,
        "check_only": check_only,
    }
