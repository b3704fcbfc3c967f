"""The bubblewrap command line that jails one warm child, and the step between fork and exec that puts it
in its cgroups and drops it to the version's uid with `no_new_privs` before bwrap (or anything the function
influences) is loaded.

Inside the jail: new user, PID, IPC, UTS, cgroup and (unless `network: true`) network namespaces; a
read-only root holding only /usr, the library dirs, /etc, the interpreter's standard library, the code and
its dependencies; a private procfs and a minimal /dev; size-capped private tmpfs for /tmp and the work dir;
nothing else of the host (no /home, /root, /run, /var, /opt, /srv, /mnt, /sys, no Ray or platform state);
a fixed environment (the function's own variables arrive in the init message, after the interpreter has
started); the seccomp policy; no capabilities; no nested user namespaces; a new session (no terminal).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .layout import KeyDirs
from .runtime import SYSTEM_DIRS, NodeRuntime, Runtime

MiB = 1 << 20
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
FIXED_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC", "TMPDIR": "/tmp"}
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Launch:
    """What the jail binds read-only for one language runtime (host path, path inside) and what it runs."""

    binds: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]


def python_launch(rt: Runtime) -> Launch:
    """The Python bootstrap: isolated mode, no site, no bytecode writes."""
    binds: list[tuple[str, str]] = [(str(rt.python_copy), rt.prefix)] if rt.prefix != "/usr" else []
    binds.append((str(rt.bootstrap), str(rt.bootstrap)))
    return Launch(tuple(binds), (rt.executable, "-I", "-S", "-B", str(rt.bootstrap)))


def node_launch(nrt: NodeRuntime, flags: list[str], chan_fds: tuple[int, int]) -> Launch:
    """The Node.js bootstrap, told which inherited fds carry the protocol (read, write)."""
    binds: list[tuple[str, str]] = [(str(nrt.copy), str(nrt.copy))] if nrt.copy is not None else []
    binds.append((str(nrt.bootstrap), str(nrt.bootstrap)))
    return Launch(tuple(binds), (nrt.executable, *flags, str(nrt.bootstrap), str(chan_fds[0]), str(chan_fds[1])))


def command(rt: Runtime, dirs: KeyDirs, *, tmp_mb: int, seccomp_fd: int, resolv_fd: int | None = None,
            launch: Launch | None = None) -> list[str]:
    """bwrap's argv for a child running the bootstrap (`launch`, else Python's) as `dirs.uid`; its network
    namespace has only loopback until the supervisor attaches egress to it (`resolv_fd`: the resolv.conf it
    then sees)."""
    lang = launch or python_launch(rt)
    tmp_bytes = str(tmp_mb * MiB)
    args = [str(rt.bwrap), "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
            "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session",
            "--hostname", "cloudfn", "--clearenv"]
    for name, value in FIXED_ENV.items():
        args += ["--setenv", name, value]
    args += ["--setenv", "HOME", str(dirs.work)]
    for path in SYSTEM_DIRS:
        args += ["--ro-bind-try", path, path]
    if resolv_fd is not None:
        args += ["--ro-bind-data", str(resolv_fd), os.path.realpath("/etc/resolv.conf")]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", tmp_bytes, "--perms", "1777", "--tmpfs", "/dev/shm",
             "--remount-ro", "/dev"]
    args += ["--size", tmp_bytes, "--perms", "1777", "--tmpfs", "/tmp"]
    for host, inside in lang.binds:
        args += ["--ro-bind", host, inside]
    args += ["--ro-bind", str(dirs.code), str(dirs.code)]
    if dirs.deps is not None and not dirs.deps.is_relative_to(dirs.code):
        args += ["--ro-bind", str(dirs.deps), str(dirs.deps)]
    args += ["--size", tmp_bytes, "--perms", "0700", "--tmpfs", str(dirs.work)]
    args += ["--remount-ro", "/", "--seccomp", str(seccomp_fd), "--chdir", str(dirs.work),
             "--", *lang.argv]
    return args


def drop_privileges(uid: int, gid: int, cgroup_procs: list[int],
                    limits: dict[str, list[int]] | None = None) -> Callable[[], None]:
    """The pre-exec step (runs in the forked child, as root): join the cgroups, apply `limits` (rlimits for
    a runtime that cannot set its own, i.e. Node.js), become uid/gid with no supplementary groups, set
    no_new_privs and a parent-death signal. Only async-signal-safe calls."""
    settings = [(getattr(resource, name), (soft, hard)) for name, (soft, hard) in (limits or {}).items()]

    def step() -> None:
        pid = str(os.getpid()).encode()
        for fd in cgroup_procs:
            os.write(fd, pid)
        for res, pair in settings:
            resource.setrlimit(res, pair)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return step


def data_fd(text: str) -> int:
    """A memfd holding `text`, positioned at 0 (for bwrap's --ro-bind-data; the caller closes it)."""
    fd = os.memfd_create("cloudfn-data", os.MFD_CLOEXEC)
    os.write(fd, text.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def open_procs_files(cgroup_dirs: list[Path]) -> list[int]:
    """Write fds for each group's `cgroup.procs`, opened by the supervisor for the pre-exec step."""
    return [os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for d in cgroup_dirs]
