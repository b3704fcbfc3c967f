"""What the bubblewrap jail promises, checked from inside a handler: its own pid namespace, a read-only minimal
root, a private capped /tmp, the seccomp policy, no privileges to gain, a fixed start-up environment; and from
outside: supervisor-measured memory, forged replies, insecure mode and a missing bwrap."""

from __future__ import annotations

import errno
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cluster.sandbox import SandboxPool, SandboxUnavailable, layout
from core.models import FunctionConfig, TaskStatus

from .conftest import invoke, needs_root, sandbox_root, uid_processes, write_code

pytestmark = needs_root

PROCESSES = """
import os, time
def numeric(path="/proc"):
    return sorted(int(e) for e in os.listdir(path) if e.isdigit())
def handler(event, context):
    before = numeric()
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    during = numeric()
    with open("/proc/1/comm") as fh:
        init = fh.read().strip()
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return {"me": os.getpid(), "parent": os.getppid(), "before": before, "during": during, "forked": pid,
            "init": init, "seen": [p for p in event if os.path.exists(f"/proc/{p}")]}
"""


def test_handler_sees_only_its_own_processes(pool: SandboxPool, tmp_path: Path) -> None:
    bystander = invoke(pool, write_code(tmp_path / "b", "def handler(e, c):\n    return 1\n"), {})
    assert bystander.status == TaskStatus.SUCCEEDED
    host_pids = [os.getpid(), os.getppid(), *uid_processes(bystander.extra["isolation"]["uid"])]
    out = invoke(pool, write_code(tmp_path, PROCESSES), host_pids)
    assert out.status == TaskStatus.SUCCEEDED, out.error
    o = out.output
    assert (o["me"], o["parent"], o["init"]) == (2, 1, "bwrap")  # bwrap's reaper is pid 1 of the namespace
    assert o["before"] == [1, 2], "only the jail's init and the handler itself"
    assert o["during"] == [1, 2, o["forked"]]
    assert [p for p in o["seen"] if p > 2 and p != o["forked"]] == [], "no host process is visible"


FILESYSTEM = """
import os, sys
def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as exc:
        return errno_name(exc.errno)
def errno_name(n):
    import errno
    return errno.errorcode.get(n, str(n))
def listing(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return None
def handler(event, context):
    writes = {
        "/": lambda: open("/planted", "w").close(),
        "/etc": lambda: open("/etc/planted", "w").close(),
        "/usr": lambda: os.mkdir("/usr/planted"),
        "prefix": lambda: open(os.path.join(sys.base_prefix, "planted"), "w").close(),
        "code": lambda: open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "planted.py"), "w").close(),
        "/proc/sys": lambda: open("/proc/sys/kernel/hostname", "w").write("x"),
    }
    dirs = ["/", "/run", "/var", "/home", "/root", "/work", "/sys", "/opt", "/mnt", "/srv", "/media", "/boot"]
    with open("/proc/self/mountinfo") as fh:
        root_opts = next(line.split()[5] for line in fh if line.split()[4] == "/")
    return {"writes": {k: attempt(f) for k, f in writes.items()}, "dirs": {d: listing(d) for d in dirs},
            "root_opts": root_opts, "prefix": sys.base_prefix}
"""


def test_root_filesystem_read_only_and_host_dirs_absent(pool: SandboxPool, tmp_path: Path) -> None:
    out = invoke(pool, write_code(tmp_path, FILESYSTEM), {})
    assert out.status == TaskStatus.SUCCEEDED, out.error
    o = out.output
    assert "ro" in o["root_opts"].split(","), o["root_opts"]
    # the root is a tmpfs the sandbox uid owns: only the read-only mount stops a write there
    assert o["writes"]["/"] == "EROFS", o["writes"]
    assert all(v in {"EROFS", "EACCES"} for v in o["writes"].values()), o["writes"]
    dirs = o["dirs"]
    assert set(dirs.pop("/")) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "sbin",
                                  "tmp", "usr"}, "a minimal root"
    prefix = Path(sys.base_prefix)
    root_view = dirs.pop("/root")
    if prefix.is_relative_to("/root"):  # the interpreter's prefix (read-only copy) is the only thing in /root
        assert root_view == [prefix.parts[2]] and o["prefix"] == str(prefix)
    else:
        assert not root_view
    assert {d: v for d, v in dirs.items() if v} == {}, "no host state: /run, /var, /home, /work, /sys, ..."


TMP = """
import errno, os
TOKEN = os.urandom(8).hex()
def handler(event, context):
    if event["op"] == "plant":
        with open("/tmp/" + event["name"], "w") as fh:
            fh.write(TOKEN)
        return TOKEN
    if event["op"] == "read":
        return {"tmp": sorted(os.listdir("/tmp")), "content": open("/tmp/" + event["name"]).read()
                if os.path.exists("/tmp/" + event["name"]) else None}
    written = 0
    try:
        for i in range(64):
            with open(f"/tmp/fill{i}", "wb") as fh:
                fh.write(b"f" * (1024 * 1024))
            written += 1
    except OSError as exc:
        return {"written": written, "errno": errno.errorcode[exc.errno]}
    return {"written": written, "errno": None}
"""


def test_tmp_is_private_per_child_and_size_capped(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, TMP)
    name = f"cloudfn-private-{secrets.token_hex(4)}"
    key_a, key_b = f"t/tmp/a/{uuid.uuid4().hex}", f"t/tmp/b/{uuid.uuid4().hex}"
    token = invoke(pool, code, {"op": "plant", "name": name}, key=key_a).output
    own = invoke(pool, code, {"op": "read", "name": name}, key=key_a)
    assert not own.cold_start and own.output["content"] == token, "its /tmp lives as long as its child"
    other = invoke(pool, code, {"op": "read", "name": name}, key=key_b)
    assert other.status == TaskStatus.SUCCEEDED and other.output["content"] is None
    assert name not in other.output["tmp"] and not Path("/tmp", name).exists()
    full = invoke(pool, code, {"op": "fill"}, config=FunctionConfig(max_file_mb=4))
    assert full.status == TaskStatus.SUCCEEDED, full.error
    assert full.output["errno"] == "ENOSPC" and full.output["written"] <= 4, full.output  # 4 MB, not 64


SYSCALLS = """
import ctypes, os
NR = {"ptrace": 101, "unshare": 272, "mount": 165, "keyctl": 250, "bpf": 321, "perf_event_open": 298,
      "userfaultfd": 323, "getppid": 110}
ARGS = {  # arguments that succeed for an unprivileged process when no filter is in the way
    "ptrace": (0, 0, 0, 0),            # PTRACE_TRACEME
    "unshare": (0,),                   # no flags at all
    "mount": (b"none", b"/tmp", b"tmpfs", 0, None),
    "keyctl": (0, -3, 0),              # KEYCTL_GET_KEYRING_ID of the session keyring
    "bpf": (0, None, 0),
    "perf_event_open": (None, 0, -1, -1, 0),
    "userfaultfd": (1,),               # UFFD_USER_MODE_ONLY
    "getppid": (),
}
def handler(event, context):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    out = {}
    for name, nr in NR.items():
        ctypes.set_errno(0)
        args = [ctypes.c_long(a) if isinstance(a, int) else a for a in ARGS[name]]
        rc = libc.syscall(ctypes.c_long(nr), *args)
        out[name] = [rc, ctypes.get_errno() if rc == -1 else 0]
    with open("/proc/self/status") as fh:
        out["status"] = {k: v.strip() for k, _, v in (l.partition(":") for l in fh) if k.startswith("Seccomp")}
    return out
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="system call numbers are x86_64's")
def test_seccomp_denies_dangerous_system_calls(pool: SandboxPool, tmp_path: Path) -> None:
    out = invoke(pool, write_code(tmp_path, SYSCALLS), {})
    assert out.status == TaskStatus.SUCCEEDED, out.error
    o = out.output
    assert o.pop("getppid") == [1, 0], "control: an allowed system call works"
    assert o.pop("status")["Seccomp"] == "2"
    assert o == {name: [-1, errno.EPERM] for name in
                 ("ptrace", "unshare", "mount", "keyctl", "bpf", "perf_event_open", "userfaultfd")}


PRIVILEGES = """
import os, subprocess
def status(text):
    return {k: v.strip() for k, _, v in (l.partition(":") for l in text.splitlines())
            if k in ("NoNewPrivs", "CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd", "Uid")}
def handler(event, context):
    with open("/proc/self/status") as fh:
        me = status(fh.read())
    child = status(subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout)
    try:
        os.setuid(0)
        setuid = "became root"
    except OSError:  # EPERM, or EINVAL: uid 0 is not even mapped in its user namespace
        setuid = "denied"
    with open("/proc/self/mountinfo") as fh:
        suid = [line.split()[4] for line in fh if "nosuid" not in line.split()[5]]
    return {"me": me, "child": child, "setuid": setuid, "suid_mounts": suid}
"""


def test_no_privilege_escalation(pool: SandboxPool, tmp_path: Path) -> None:
    out = invoke(pool, write_code(tmp_path, PRIVILEGES), {})
    assert out.status == TaskStatus.SUCCEEDED, out.error
    o = out.output
    uid = str(out.extra["isolation"]["uid"])
    for proc in (o["me"], o["child"]):  # the handler and whatever it executes
        assert proc["NoNewPrivs"] == "1" and proc["Uid"].split() == [uid] * 4, proc
        assert all(int(proc[c], 16) == 0 for c in ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd")), proc
    assert o["setuid"] == "denied" and uid != "0"
    assert o["suid_mounts"] == [], "every mount is nosuid"


PRELOAD_C = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void ran(void) {
    int fd = open("/tmp/preload-ran", O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd >= 0) { write(fd, "x", 1); close(fd); }
}
"""

LOADER = """
import os, subprocess
def handler(event, context):
    seen_at_start = os.path.exists("/tmp/preload-ran")
    with open("/proc/self/environ", "rb") as fh:  # the block the loader read at exec
        exec_env = fh.read().decode()
    with open("/proc/1/environ", "rb") as fh:  # bwrap's
        bwrap_env = fh.read().decode()
    subprocess.run(["/bin/true"], check=True)  # control: a process it starts does get its own env
    return {"seen_at_start": seen_at_start, "exec_env": exec_env, "bwrap_env": bwrap_env,
            "control": os.path.exists("/tmp/preload-ran"),
            "environ": {k: v for k, v in os.environ.items() if k.startswith("LD_")}}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the preload library")
def test_loader_variables_never_reach_bwrap_or_the_interpreter(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, LOADER)
    (tmp_path / "ran.c").write_text(PRELOAD_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(code / "ran.so"), str(tmp_path / "ran.c")], check=True)
    key = f"t/loader/{uuid.uuid4().hex}"
    lib = layout.prepare(pool.root, key, code, layout.allocate_uid(pool.root, key)).code / "ran.so"
    env = {"LD_PRELOAD": str(lib), "LD_AUDIT": str(lib), "LD_LIBRARY_PATH": "/tmp", "PYTHONSTARTUP": str(lib)}
    out = invoke(pool, code, {}, key=key, config=FunctionConfig(env=env))
    assert out.status == TaskStatus.SUCCEEDED, out.error
    o = out.output
    assert not o["seen_at_start"], "the preload library ran when bwrap or the interpreter started"
    assert "LD_" not in o["exec_env"] and "LD_" not in o["bwrap_env"] and "PYTHON" not in o["exec_env"]
    assert o["environ"] == {k: v for k, v in env.items() if k.startswith("LD_")}, "set only after start-up"
    assert o["control"], "control: the library does run in a process started with that environment"


def test_peak_memory_measured_from_outside(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, """
        def handler(event, context):
            block = bytearray(event * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])
            return len(block)
    """)
    key = f"t/peak/{uuid.uuid4().hex}"
    cfg = FunctionConfig(memory_mb=256)
    out = invoke(pool, code, 50, key=key, config=cfg)
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert out.peak_memory_mb >= 50, out.peak_memory_mb
    small = invoke(pool, code, 0, key=key, config=cfg)
    assert not small.cold_start and small.peak_memory_mb < out.peak_memory_mb - 30


FORGE = """
import os, stat, struct, subprocess, fcntl
def handler(event, context):
    # a process of its own, in a new session, that outlives the handler unless the jail is torn down
    subprocess.Popen(["sleep", "600"], start_new_session=True)
    header = event["header"].encode()
    frame = struct.pack(">III", len(header), 0, 0) + header
    for fd in range(3, 64):  # the protocol pipe back to the supervisor
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                os.write(fd, frame)
        except OSError:
            pass
    return "forged"
"""
DEEP = 50_000


@pytest.mark.parametrize("header", [
    json.dumps({"status": "succeeded", "error": None, "retire": "no", "cpu_wait_ms": "fast"}),
    json.dumps({"status": 1, "error": {"type": ["x"], "message": 5}}),
    '{"status": "succeeded", "error": null, "cpu_wait_ms": NaN}',
    '{"status": "succeeded", "error": null, "cpu_wait_ms": 1e999}',
    '{"status": "succeeded", "error": null, "x": ' + "[" * DEEP + "]" * DEEP + "}",
], ids=["wrong-types", "wrong-error", "nan", "infinity", "deeply-nested"])
def test_forged_reply_is_a_protocol_error_and_leaks_nothing(pool: SandboxPool, tmp_path: Path, header: str) -> None:
    key = f"t/forge/{uuid.uuid4().hex}"
    layout.ensure_root(pool.root)
    uid = layout.allocate_uid(pool.root, key)
    # uids are unique per pool root; another root on this host (another test run) may use the same one
    before = set(uid_processes(uid))
    out = invoke(pool, write_code(tmp_path, FORGE), {"header": header}, key=key)
    assert out.status == TaskStatus.FAILED and out.error is not None, out
    assert out.error["type"] == "SandboxProtocolError" and out.output is None, out.error
    assert out.extra["isolation"]["uid"] == uid and pool.warm_count(key) == 0
    deadline = time.monotonic() + 5
    while set(uid_processes(uid)) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(uid_processes(uid)) - before == set(), "the child, its jail and its detached process are all gone"


def test_nan_output_is_not_json(pool: SandboxPool, tmp_path: Path) -> None:
    code = write_code(tmp_path, "def handler(event, context):\n    return {'x': float(event)}\n")
    for value in ("nan", "inf", "-inf"):
        out = invoke(pool, code, value)
        assert out.status == TaskStatus.FAILED and out.error is not None and out.error["type"] == "OutputNotJSON"


COUNTER = "import os\ndef handler(event, context):\n    return os.getpid()\n"


def test_insecure_mode_is_recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLOUDFN_SANDBOX", "insecure")
    root = sandbox_root()
    p = SandboxPool(root)
    try:
        out = invoke(p, write_code(tmp_path, COUNTER), {})
        assert out.status == TaskStatus.SUCCEEDED, out.error
        assert out.extra["sandbox"] == "insecure" and out.extra["isolation"]["jail"] is None
        assert out.output != 2, "insecure mode really runs without the jail's pid namespace"
    finally:
        p.close()
        shutil.rmtree(root, ignore_errors=True)


def test_missing_bwrap_is_sandbox_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CLOUDFN_SANDBOX", raising=False)
    monkeypatch.setenv("CLOUDFN_SANDBOX_BWRAP", str(tmp_path / "no-such-bwrap"))
    root = sandbox_root()  # a fresh root: the runtime is assembled (and bwrap found) once per root
    p = SandboxPool(root)
    code = write_code(tmp_path, COUNTER)
    try:
        out = invoke(p, code, {})
        assert out.status == TaskStatus.FAILED and out.error is not None, out
        assert out.error["type"] == "SandboxUnavailable" and out.output is None, out.error
        assert p.warm_count() == 0
        with pytest.raises(SandboxUnavailable):
            p.check_handler(key="t/unavailable", code_dir=code, handler="main.handler", config=FunctionConfig())
    finally:
        p.close()
        shutil.rmtree(root, ignore_errors=True)



def test_root_out_of_reach_of_sandbox_uids_is_sandbox_unavailable(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)  # pytest's own tmp dirs: nobody but root may pass
    p = SandboxPool(tmp_path / "root")
    code = write_code(tmp_path, COUNTER)
    try:
        out = invoke(p, code, {})
        assert out.status == TaskStatus.FAILED and out.error is not None
        assert out.error["type"] == "SandboxUnavailable" and "not searchable" in out.error["message"], out.error
        with pytest.raises(SandboxUnavailable, match="not searchable"):
            p.check_handler(key="t/unreachable", code_dir=code, handler="main.handler", config=FunctionConfig())
    finally:
        p.close()
