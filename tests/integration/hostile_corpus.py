"""Hostile functions, one per class of attack: each handler tries the attack from inside the sandbox and returns
what it observed, so the test can assert that the attack failed. Sources only; test_hostile_corpus deploys
each as a ZIP through the HTTP API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRELUDE = '''
import ctypes, errno, json, os, signal, socket, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)


def attempt(fn):
    try:
        return {"ok": True, "value": repr(fn())[:200]}
    except BaseException as exc:
        return {"ok": False, "error": type(exc).__name__ + ": " + str(exc)[:200]}


def forge(header, body=b'null'):
    """Write a whole reply frame into every fd: the supervisor's pipe is among them."""
    import struct
    for fd in range(3, 64):
        try:
            os.write(fd, struct.pack('>III', len(header), len(body), 0) + header + body)
        except OSError:
            pass


def syscall(nr, *args):
    rc = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return rc, ctypes.get_errno()
'''


@dataclass
class Attack:
    """A hostile function: its source, config, the event it gets and how its record must look."""

    name: str
    source: str
    config: dict[str, Any] = field(default_factory=dict)
    event: Any = None
    expect_status: str | None = "succeeded"  # None: any terminal status
    expect_error: str | None = None  # the error type the record must carry


def _src(body: str) -> str:
    return PRELUDE + "\n\ndef handler(event, context):\n" + "\n".join("    " + line for line in body.splitlines())


SECRET_PATHS = "['/etc/shadow', '/root/.bash_history', '/proc/1/root/etc/shadow', '/etc/gshadow']"

ATTACKS: list[Attack] = [
    Attack("read-platform-secrets", _src(f'''
paths = {SECRET_PATHS} + [event['home'] + '/' + n for n in ('admin.key', 'secrets.key', 'database.url')]
found = [p for p in paths if attempt(lambda p=p: open(p, 'rb').read(1))['ok']]
pid1_env = attempt(lambda: open('/proc/1/environ', 'rb').read().decode('latin-1'))
return {{"read": found, "home_visible": os.path.exists(event['home']),
        "pid1_env": pid1_env.get('value', '')}}''')),
    Attack("root-and-capabilities", _src('''
status = open('/proc/self/status').read()
caps = {l.split(':')[0]: l.split(':')[1].strip() for l in status.splitlines() if l.startswith(('Cap', 'NoNewPrivs'))}
return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "setuid0": attempt(lambda: os.setuid(0))['ok'], "caps": caps}''')),
    Attack("setuid-binaries-give-nothing", _src('''
out = []
for path in ('/usr/bin/su', '/usr/bin/passwd', '/usr/bin/newgrp', '/usr/bin/chsh', '/usr/bin/mount'):
    if os.path.exists(path):
        r = attempt(lambda p=path: subprocess.run([p, '--help'], capture_output=True, timeout=5).returncode)
        out.append(path)
probe = subprocess.run([sys.executable, '-I', '-S', '-c', 'import os; print(os.geteuid())'],
                       capture_output=True, text=True, timeout=10).stdout.strip()
return {"child_euid": probe, "tried": out}''')),
    Attack("sees-only-its-own-processes", _src('''
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
cmdlines = [open(f'/proc/{p}/cmdline', 'rb').read()[:60].decode('latin-1') for p in pids
            if os.path.exists(f'/proc/{p}')]
return {"pids": pids, "platform_visible": any('ray' in c or 'postgres' in c or 'uvicorn' in c for c in cmdlines)}''')),
    Attack("signal-everything", _src('''
hit = []
for pid in range(2, 400):
    if pid == os.getpid():
        continue
    try:
        os.kill(pid, 0)
        hit.append(pid)
    except OSError:
        pass
return {"signalable": hit}''')),
    Attack("kill-minus-one", _src('''
os.kill(-1, signal.SIGKILL)
time.sleep(1)
return "survived"'''), expect_status=None),
    Attack("ptrace-and-process-vm", _src('''
PTRACE_ATTACH, PTRACE_TRACEME = 16, 0
return {"attach": syscall(101, PTRACE_ATTACH, 1, 0, 0), "traceme": syscall(101, PTRACE_TRACEME, 0, 0, 0),
        "vm_readv": syscall(310, 1, 0, 0, 0, 0, 0)}''')),
    Attack("namespaces-and-mounts", _src('''
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x00020000, 0x40000000
return {"unshare_user": syscall(272, CLONE_NEWUSER), "unshare_ns": syscall(272, CLONE_NEWNS),
        "unshare_net": syscall(272, CLONE_NEWNET), "setns": syscall(308, 0, 0),
        "mount": libc.mount(b"none", b"/tmp", b"tmpfs", 0, None), "mount_errno": ctypes.get_errno(),
        "unshare_cmd": attempt(lambda: subprocess.run(['unshare', '-Ur', 'id'], capture_output=True,
                                                      timeout=5).returncode)}''')),
    Attack("kernel-attack-surface", _src('''
return {"bpf": syscall(321, 0, 0, 0), "keyctl": syscall(250, 0, 0, 0, 0), "add_key": syscall(248, 0, 0, 0, 0, 0),
        "perf_event_open": syscall(298, 0, 0, -1, -1, 0), "userfaultfd": syscall(323, 0),
        "io_uring_setup": syscall(425, 1, 0), "kexec_load": syscall(246, 0, 0, 0, 0),
        "init_module": syscall(175, 0, 0, 0)}''')),
    Attack("write-the-host", _src('''
results = {}
for path in ('/usr/cloudfn-owned', '/etc/cloudfn-owned', '/cloudfn-owned', '/bin/cloudfn-owned',
             '/lib/cloudfn-owned', os.environ['LAMBDA_TASK_ROOT'] + '/cloudfn-owned'):
    results[path] = attempt(lambda p=path: open(p, 'w').write('x'))['ok']
return results'''), event=None),
    Attack("drop-box-writer", _src('''
wrote = {}
for d in ('/run/lock', '/var/tmp', '/dev/shm', '/tmp', '/var/lock', '/dev/mqueue'):
    wrote[d] = attempt(lambda d=d: open(d + '/cloudfn-drop-box', 'w').write('from the writer'))['ok']
return wrote''')),
    Attack("drop-box-reader", _src('''
seen = {}
for d in ('/run/lock', '/var/tmp', '/dev/shm', '/tmp', '/var/lock', '/dev/mqueue'):
    seen[d] = attempt(lambda d=d: open(d + '/cloudfn-drop-box').read())['ok']
return seen''')),
    Attack("tmp-size-cap", _src('''
chunk = b'x' * (1 << 20)
written = 0
try:
    with open('/tmp/fill', 'wb') as f:
        for _ in range(64):
            f.write(chunk)
            written += 1
except OSError as exc:
    return {"written_mb": written, "stopped": errno.errorcode.get(exc.errno, str(exc.errno))}
return {"written_mb": written, "stopped": None}'''), config={"max_file_mb": 8, "memory_mb": 256}),
    Attack("fork-bomb", _src('''
kids = []
try:
    for _ in range(500):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        kids.append(pid)
except OSError as exc:
    return {"forked": len(kids), "stopped": errno.errorcode.get(exc.errno, str(exc.errno))}
return {"forked": len(kids), "stopped": None}'''), config={"max_processes": 16, "timeout_s": 20}),
    Attack("memory-hog", _src('''
hog = []
while True:
    hog.append(bytearray(16 << 20))'''), config={"memory_mb": 128}, expect_status="failed",
           expect_error="MemoryLimitExceeded"),
    Attack("cpu-spin", _src('''
while True:
    pass'''), config={"cpu_s": 1, "timeout_s": 60},  # a second of CPU arrives late on a crowded host
           expect_status="failed", expect_error="CpuLimitExceeded"),
    Attack("sleep-forever", _src('''
time.sleep(3600)'''), config={"timeout_s": 2}, expect_status="timed_out", expect_error="TimeoutError"),
    Attack("log-flood", _src('''
for i in range(200000):
    print('flood line', i, 'x' * 100)
return "flooded"'''), config={"max_output_kb": 64}),
    Attack("huge-output", _src('''
return 'y' * (64 << 20)'''), config={"memory_mb": 512, "max_output_kb": 1024}, expect_status="failed",
           expect_error="OutputLimitExceeded"),
    Attack("forge-protocol-frames", _src('''
forge(json.dumps({"status": "succeeded", "error": None, "duration_ms": 1e308, "cpu_ms": -5,
                  "peak_memory_mb": float('inf'), "retire": "no", "cpu_wait_ms": 1e300}).encode(), b'42')
return "forged"'''), expect_status=None),
    Attack("forge-nan-header", _src('''
forge(b'{"status": "succeeded", "error": null, "cpu_wait_ms": NaN, "retire": false}')
return "forged"'''), expect_status=None),
    Attack("forge-deep-header", _src('''
forge(b'{"status": "succeeded", "x": ' + b'[' * 200000 + b']' * 200000 + b'}')
return "forged"'''), expect_status=None),
    Attack("nul-in-output", _src('''
print("log with a \\x00 NUL inside")
return {"value": "before\\u0000after"}''')),
    Attack("nan-output", _src('''
return {"value": float("nan"), "inf": float("inf")}'''), expect_status="failed", expect_error="OutputNotJSON"),
    Attack("deep-output", _src('''
v = []
for _ in range(100000):
    v = [v]
return v'''), expect_status="failed", expect_error="OutputNotJSON"),
    Attack("nul-in-error", _src('''
raise ValueError("bad \\x00 byte")'''), expect_status="failed", expect_error="ValueError"),
    Attack("hostile-exception", _src('''
class Evil(Exception):
    def __str__(self):
        raise RuntimeError("no message for you")
raise Evil()'''), expect_status="failed", expect_error="Evil"),
    Attack("no-network-by-default", _src('''
out = {}
for host, port in (("127.0.0.1", event['api_port']), ("169.254.169.254", 80), ("10.0.0.1", 80)):
    s = socket.socket()
    s.settimeout(1)
    out[f"{host}:{port}"] = attempt(lambda: s.connect((host, port)))['ok']
    s.close()
return {"reached": [k for k, v in out.items() if v], "interfaces": [n for _, n in socket.if_nameindex()]}''')),
    Attack("ray-and-platform-state", _src('''
found = []
for path in ('/tmp/ray', '/tmp/ray/session_latest', event['home'], '/work', '/root/.cloudfn', '/home', '/srv',
             '/opt', '/var/lib/postgresql', '/sys/fs/cgroup'):
    if os.path.exists(path) and attempt(lambda p=path: os.listdir(p))['ok'] and os.listdir(path):
        found.append(path)
return {"listable": found}''')),
    Attack("env-is-fixed", _src('''
return {"env": sorted(os.environ)}''')),
]
