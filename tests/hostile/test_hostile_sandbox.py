"""Hostile handlers (one folder each under tests/hostile/): every attempt must fail, and the pool must still
serve a normal function afterwards. Most need root (uids, namespaces, cgroups) and skip without it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sysconfig
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.sandbox import InvocationContext, SandboxPool
from cluster.sandbox.layout import digest
from core.models import ExecutionOutcome, FunctionConfig, TaskStatus
from tests.unit.sandbox.conftest import uid_processes

HOSTILE = Path(__file__).parent
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: isolation relies on a uid of its own")


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    root = Path(f"/tmp/cloudfn-sandbox-hostile-{os.getpid()}")
    p = SandboxPool(root)
    yield p
    p.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def normal_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    code = tmp_path_factory.mktemp("normal") / "code"
    code.mkdir()
    (code / "main.py").write_text("def handler(event, context):\n    return {'echo': event}\n")
    return code


def run(pool: SandboxPool, code: Path, event: Any, config: FunctionConfig | None = None,
        key: str | None = None) -> ExecutionOutcome:
    cfg = config or FunctionConfig(timeout_s=10, memory_mb=128)
    ctx = InvocationContext("hostile", "1", uuid.uuid4().hex, cfg.memory_mb, "arn:hostile", "/g", "s",
                            time.time() + cfg.timeout_s)
    return pool.invoke(key=key or f"hostile/{uuid.uuid4().hex}", code_dir=code, handler="main.handler",
                       config=cfg, event_json=json.dumps(event).encode(), context=ctx)


def assert_pool_healthy(pool: SandboxPool, normal_code: Path) -> None:
    out = run(pool, normal_code, {"still": "alive"})
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert out.output == {"echo": {"still": "alive"}}


@needs_root
def test_cannot_read_ray_token_or_ray_temp(pool: SandboxPool, normal_code: Path) -> None:
    planted = Path(f"/tmp/ray-hostile-{secrets.token_hex(4)}")
    (planted / "session_latest").mkdir(parents=True)
    token = planted / "session_latest" / "auth_token"
    token.write_text("SECRET-TOKEN")
    os.chmod(planted, 0o755)
    os.chmod(token, 0o644)
    try:
        out = run(pool, HOSTILE / "read_secrets", {"paths": [str(token)], "dir": str(planted)})
        assert out.status == TaskStatus.SUCCEEDED, out.error
        assert out.output["read"] == {}
        listed = dict(out.output["listed"])
        # /root is an empty tmpfs in its mount namespace, except the read-only path to the stdlib
        stdlib_top = {Path(p).parts[2] for p in sysconfig.get_paths().values() if p.startswith("/root/")}
        assert set(listed.pop("/root", [])) <= stdlib_top
        assert listed == {}, "neither Ray's temp dir nor the planted secret's dir may be visible"
    finally:
        shutil.rmtree(planted)
    assert_pool_healthy(pool, normal_code)


@needs_root
def test_platform_environment_and_home_invisible(pool: SandboxPool, normal_code: Path,
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = Path(f"/tmp/cloudfn-home-{secrets.token_hex(4)}")
    home.mkdir(mode=0o755)
    (home / "admin.key").write_text("ADMIN-KEY")
    os.chmod(home / "admin.key", 0o644)
    monkeypatch.setenv("CLOUDFN_HOME", str(home))
    monkeypatch.setenv("CLOUDFN_DATABASE_URL", "postgresql://postgres:secret@/db")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "SECRET-TOKEN")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    try:
        out = run(pool, HOSTILE / "read_env", {"home": str(home)},
                  FunctionConfig(env={"MY_SETTING": "mine"}))
    finally:
        shutil.rmtree(home)
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert out.output["env"] == {} and out.output["home_files"] == {}
    # the environment blocks the loader saw (the jail's init, the interpreter's exec) hold the fixed set only
    assert out.output["environs"], "/proc/<pid>/environ of its own jail should be readable"
    for block in out.output["environs"].values():
        names = {item.partition("=")[0] for item in block.split("\0") if item}
        assert names <= {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "PWD"}, names  # PWD: bwrap --chdir
        assert "SECRET" not in block and "postgresql" not in block and str(home) not in block
    allowed = {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "LAMBDA_TASK_ROOT", "_HANDLER", "MY_SETTING"}
    assert set(out.output["all_env"]) - allowed <= {n for n in out.output["all_env"] if n.startswith("AWS_LAMBDA_")}
    assert "MY_SETTING" in out.output["all_env"]
    assert_pool_healthy(pool, normal_code)


@needs_root
def test_cannot_read_or_overwrite_another_keys_code(pool: SandboxPool, normal_code: Path) -> None:
    victim_key = f"victim/{uuid.uuid4().hex}"
    assert run(pool, normal_code, 1, key=victim_key).output == {"echo": 1}
    target = pool.root / "k" / digest(victim_key) / "code"
    before = (target / "main.py").read_text()
    out = run(pool, HOSTILE / "other_key", {"target": str(target), "root": str(pool.root / "k")})
    assert out.status == TaskStatus.SUCCEEDED, out.error
    results = dict(out.output)
    assert digest(victim_key) not in results.pop("list_root"), "other keys' dirs must not even be listed"
    assert all(v.startswith("denied") for v in results.values()), results
    assert (target / "main.py").read_text() == before and not (target / "evil.py").exists()
    assert run(pool, normal_code, 2, key=victim_key).output == {"echo": 2}


@needs_root
def test_cannot_write_outside_working_dir(pool: SandboxPool, normal_code: Path) -> None:
    locked = Path(f"/tmp/cloudfn-hostile-x-{secrets.token_hex(4)}")
    locked.mkdir(mode=0o755)
    tmp_name = f"cloudfn-hostile-{secrets.token_hex(4)}"
    try:
        out = run(pool, HOSTILE / "write_outside", {"paths": [str(locked / "x")], "tmp_name": tmp_name})
        assert out.status == TaskStatus.SUCCEEDED, out.error
        results = dict(out.output)
        assert results.pop("cwd_ok") == "ok"
        assert all(v.startswith("denied") for v in results.values()), results
        assert not (locked / "x").exists() and not Path("/etc/cloudfn-hostile").exists()
        assert not Path("/tmp", tmp_name).exists(), "its /tmp must be private"
    finally:
        shutil.rmtree(locked)
    assert_pool_healthy(pool, normal_code)


@needs_root
def test_no_network_unless_enabled(pool: SandboxPool, normal_code: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                accepted.append(conn.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        out = run(pool, HOSTILE / "network", {"port": port})
        assert out.status == TaskStatus.FAILED and out.error is not None
        assert out.error["type"] in {"OSError", "ConnectionRefusedError", "TimeoutError"}, out.error
        assert accepted == []
        # network: true reaches public destinations only (tests/integration/test_egress.py): never the host's
        # loopback, where the platform's own services listen
        egress = run(pool, HOSTILE / "network", {"port": port}, FunctionConfig(network=True))
        assert egress.status == TaskStatus.FAILED and egress.error is not None, egress.output
        assert accepted == []
    finally:
        stop.set()
        thread.join()
        server.close()
    assert_pool_healthy(pool, normal_code)


def test_memory_hog_stopped(pool: SandboxPool, normal_code: Path) -> None:
    out = run(pool, HOSTILE / "memory_hog", {"mb": 64}, FunctionConfig(memory_mb=64))
    assert out.status == TaskStatus.FAILED and out.error is not None
    assert out.error["type"] == "MemoryLimitExceeded"
    assert_pool_healthy(pool, normal_code)


def test_spin_forever_stopped(pool: SandboxPool, normal_code: Path) -> None:
    t0 = time.monotonic()
    out = run(pool, HOSTILE / "spin", {}, FunctionConfig(timeout_s=4, cpu_s=1))
    assert time.monotonic() - t0 < 8
    assert out.status in {TaskStatus.FAILED, TaskStatus.TIMED_OUT} and out.error is not None
    assert out.error["type"] in {"CpuLimitExceeded", "TimeoutError"}
    assert_pool_healthy(pool, normal_code)


def test_sleep_past_timeout(pool: SandboxPool, normal_code: Path) -> None:
    t0 = time.monotonic()
    out = run(pool, HOSTILE / "sleep_forever", {}, FunctionConfig(timeout_s=1))
    assert time.monotonic() - t0 < 4
    assert out.status == TaskStatus.TIMED_OUT and out.error is not None and out.error["type"] == "TimeoutError"
    assert_pool_healthy(pool, normal_code)


@needs_root
def test_fork_bomb_contained(pool: SandboxPool, normal_code: Path) -> None:
    out = run(pool, HOSTILE / "fork_bomb", {"n": 100000}, FunctionConfig(timeout_s=3, max_processes=8))
    assert out.status != TaskStatus.SUCCEEDED
    uid = out.extra["isolation"]["uid"]
    assert uid != 0
    deadline = time.monotonic() + 5
    while uid_processes(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uid_processes(uid) == [], "every forked process (even after setsid) must be gone"
    assert_pool_healthy(pool, normal_code)


def test_fill_disk_stopped(pool: SandboxPool, normal_code: Path) -> None:
    cfg = FunctionConfig(max_file_mb=4)
    one = run(pool, HOSTILE / "fill_disk", {"mode": "one", "mb": 8}, cfg)
    assert one.status == TaskStatus.FAILED and one.error is not None
    assert one.error["type"] == "FileSizeLimitExceeded"
    if os.geteuid() == 0:  # many small files: only a private, size-capped tmpfs stops this
        many = run(pool, HOSTILE / "fill_disk", {"mode": "many", "mb": 16}, cfg)
        assert many.status == TaskStatus.FAILED and many.error is not None
        assert "No space left" in many.error["message"]
    assert_pool_healthy(pool, normal_code)


def test_print_flood_capped(pool: SandboxPool, normal_code: Path) -> None:
    out = run(pool, HOSTILE / "print_flood", {}, FunctionConfig(timeout_s=30, max_output_kb=64))
    assert len(out.logs.encode()) <= 64 * 1024 + 200
    assert "log output truncated" in out.logs or out.status != TaskStatus.SUCCEEDED
    assert_pool_healthy(pool, normal_code)


@needs_root
def test_cannot_kill_parent_or_other_sandboxes(pool: SandboxPool, normal_code: Path) -> None:
    bystander = f"bystander/{uuid.uuid4().hex}"
    assert run(pool, normal_code, 0, key=bystander).cold_start
    attacker = f"attacker/{uuid.uuid4().hex}"
    out = run(pool, HOSTILE / "kill_parent", {"supervisor_pid": os.getpid(), "all": True}, key=attacker)
    assert out.status == TaskStatus.SUCCEEDED, out.error
    # Its parent is the jail's init (pid 1 of its pid namespace, which ignores signals from inside); the
    # supervisor and every other process on the host are not in its pid namespace at all.
    assert out.output["supervisor"] in {"denied: ProcessLookupError", "denied: PermissionError"}, out.output
    assert out.output["all"] in {"denied: ProcessLookupError", "signalled"}, out.output
    survived = run(pool, HOSTILE / "kill_parent", {"supervisor_pid": os.getpid()}, key=attacker)
    assert survived.status == TaskStatus.SUCCEEDED and not survived.cold_start, "its own jail outlived the kills"
    warm = run(pool, normal_code, 1, key=bystander)
    assert warm.status == TaskStatus.SUCCEEDED and not warm.cold_start, "kill -9 -1 must not reach other keys"
    assert_pool_healthy(pool, normal_code)


def test_forged_protocol_frames_rejected(pool: SandboxPool, normal_code: Path) -> None:
    key = f"forge/{uuid.uuid4().hex}"
    out = run(pool, HOSTILE / "forge_protocol", {}, key=key)
    assert out.status == TaskStatus.FAILED and out.error is not None
    assert out.error["type"] == "SandboxProtocolError" and out.output is None
    assert pool.warm_count(key) == 0, "a child that broke the protocol is never reused"
    assert_pool_healthy(pool, normal_code)
