"""Egress of jailed functions, in a world the test builds (tests/egress_world.py): `network: false` reaches
nothing; `network: true` reaches the stand-in public host and nothing of the host or of private ranges;
CLOUDFN_EGRESS_ALLOW opens a chosen range. Uses the sandbox pool directly (root, slirp4netns, nftables)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from cluster.sandbox import InvocationContext, SandboxPool
from cluster.sandbox.egress import missing_tools
from core.models import FunctionConfig
from tests.egress_world import World, can_build, world

pytestmark = pytest.mark.skipif(bool(can_build() or missing_tools()),
                                reason=f"{can_build() or ''} {missing_tools() or ''}")
PROBE = '''
import socket, urllib.request
def handler(event, context):
    out = {}
    for name, (host, port) in event["targets"].items():
        s = socket.socket()
        s.settimeout(3)
        try:
            s.connect((host, port))
            out[name] = "reached"
        except OSError as exc:
            out[name] = type(exc).__name__
        finally:
            s.close()
    try:
        out["public_body"] = urllib.request.urlopen(event["url"], timeout=3).read().decode()
    except Exception as exc:
        out["public_body"] = type(exc).__name__
    out["resolv"] = open("/etc/resolv.conf").read()
    out["interfaces"] = sorted(n for _, n in socket.if_nameindex())
    return out
'''


@pytest.fixture(scope="module")
def the_world() -> Iterator[World]:
    with world() as w:
        yield w


@pytest.fixture(scope="module")
def host_server() -> Iterator[int]:
    """A server of the host's own, on every address (as the API, Ray or a database might listen)."""
    srv = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    root = Path(f"/tmp/cloudfn-sandbox-egress-{os.getpid()}")
    p = SandboxPool(root)
    yield p
    p.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = Path(f"/tmp/cloudfn-egress-code-{os.getpid()}")
    d.mkdir(exist_ok=True)
    (d / "main.py").write_text(PROBE)
    return d


def host_address() -> str:
    """One of the host's own non-loopback IPv4 addresses."""
    for name, addrs in psutil.net_if_addrs().items():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127.") and not name.startswith("cf"):
                return str(a.address)
    pytest.skip("the host has no non-loopback IPv4 address")


def run(pool: SandboxPool, code: Path, w: World, port: int, network: bool, key: str) -> dict[str, Any]:
    targets = {"public": (w.public, w.port), "private": (w.private, w.port), "host_loopback": ("127.0.0.1", port),
               "host_address": (host_address(), port), "metadata": ("169.254.169.254", 80),
               "dns_forwarder_other_port": ("10.0.2.3", 80), "gateway": ("10.0.2.2", port)}
    cfg = FunctionConfig(timeout_s=30, memory_mb=256, network=network)
    ctx = InvocationContext("egress", "1", uuid.uuid4().hex, 256, "arn", "/g", "s", time.time() + 30)
    out = pool.invoke(key=key, code_dir=code, handler="main.handler", config=cfg, context=ctx,
                      event_json=json.dumps({"targets": targets, "url": f"http://{w.public}:{w.port}/"}).encode())
    assert out.status.value == "succeeded", out.error
    return dict(out.output)


def test_no_network_reaches_nothing(pool: SandboxPool, code: Path, the_world: World, host_server: int) -> None:
    out = run(pool, code, the_world, host_server, network=False, key=f"egress/off/{uuid.uuid4().hex}")
    assert out["interfaces"] == ["lo"]
    assert all(out[k] != "reached" for k in ("public", "private", "host_loopback", "host_address", "metadata"))
    assert out["public_body"] != the_world.public


def test_network_true_reaches_public_only(pool: SandboxPool, code: Path, the_world: World,
                                          host_server: int) -> None:
    out = run(pool, code, the_world, host_server, network=True, key=f"egress/on/{uuid.uuid4().hex}")
    assert out["public"] == "reached" and out["public_body"] == the_world.public, out
    for refused in ("private", "host_loopback", "host_address", "metadata", "dns_forwarder_other_port", "gateway"):
        assert out[refused] != "reached", (refused, out)
    assert out["resolv"].startswith("nameserver 10.0.2.3"), out["resolv"]  # names resolve via the forwarder


def test_egress_allow_opens_a_range(pool: SandboxPool, code: Path, the_world: World, host_server: int,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFN_EGRESS_ALLOW", f"{the_world.private}/32")
    out = run(pool, code, the_world, host_server, network=True, key=f"egress/allow/{uuid.uuid4().hex}")
    assert out["private"] == "reached" and out["public"] == "reached", out
    assert out["host_loopback"] != "reached" and out["metadata"] != "reached", out


def test_the_egress_stack_ends_with_its_child(pool: SandboxPool, code: Path, the_world: World,
                                              host_server: int) -> None:
    key = f"egress/end/{uuid.uuid4().hex}"
    run(pool, code, the_world, host_server, network=True, key=key)
    assert [p for p in psutil.process_iter(["name"]) if p.info["name"] == "slirp4netns"]
    before = {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "slirp4netns"}
    pool.kill(key)
    time.sleep(0.5)
    after = {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "slirp4netns"}
    assert len(after) < len(before), (before, after)


def test_the_stack_attaches_only_once_bwrap_is_done_with_the_namespace() -> None:
    """slirp4netns --configure brings the namespace's loopback up (the kernel then adds 127.0.0.1), and
    bwrap adds that address itself with NLM_F_EXCL: attached while bwrap still sets the namespace up, the jail
    failed now and then ("loopback: Failed RTM_NEWADDR"). A process named bwrap in its own namespace is not
    picked; the one it execs is."""
    import subprocess
    import sys

    from cluster.sandbox.egress import namespace_pid

    # named bwrap before it has a namespace of its own (as bwrap is): `unshare --net sh -c 'printf bwrap > …'`
    # left a moment in which a process named sh or unshare was in the new namespace, and was picked
    script = ("import ctypes, os, time\n"
              "with open('/proc/self/comm', 'w') as f:\n    f.write('bwrap')\n"
              "assert ctypes.CDLL(None, use_errno=True).unshare(0x40000000) == 0  # CLONE_NEWNET\n"
              "time.sleep(0.5)\n"
              "os.execvp('sleep', ['sleep', '30'])\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        pid = namespace_pid(lambda: [proc.pid])
        assert Path(f"/proc/{pid}/comm").read_text() == "sleep\n"
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    finally:
        proc.kill()
        proc.wait()


def test_network_children_started_together_all_start(pool: SandboxPool, code: Path, the_world: World,
                                                     host_server: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(lambda i: run(pool, code, the_world, host_server, network=True,
                                         key=f"egress/many/{i}/{uuid.uuid4().hex}"), range(16)))
    assert all(o["public"] == "reached" for o in outs), outs
