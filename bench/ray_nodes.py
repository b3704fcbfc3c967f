"""A Ray cluster of two nodes on this host (`ray start`, each in a session of its own), for the two-node end-to-end
test and the two-raylet bench: a head and a second node with a temp dir of its own (two nodes on one host must not
share Ray's runtime_resources directory), both with Ray's token authentication."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench.platform_proc import free_port

RAY = Path(sys.executable).with_name("ray")


def ray_env(tmp: Path) -> dict[str, str]:
    """The environment of every process of this cluster: Ray's token authentication with the cluster's token."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp / "auth_token")}


def clean_env(tmp: Path) -> dict[str, str]:
    """This process's environment without its own Ray driver's variables, plus the cluster's."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **ray_env(tmp)}


class RayNode:
    """`ray start … --block` in a session of its own: the node lives as long as that session."""

    def __init__(self, args: list[str], tmp: Path, log: Path) -> None:
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
        port_args = [f"{flag}={free_port()}" for flag in ports]
        self.proc = subprocess.Popen([str(RAY), "start", "--block", *args, *port_args], env=clean_env(tmp),
                                     stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL every process of the node's session (raylet, its workers and their sandboxes): a lost node."""
        sid = self.proc.pid
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == sid:
                    p.kill()
            except (psutil.Error, ProcessLookupError):
                pass
        self.proc.wait(30)


def ray_query(cluster: dict[str, Any], code: str) -> Any:
    """Run a snippet as a separate Ray driver of this cluster; return what it prints as JSON."""
    script = f"import json, ray\nray.init(address={cluster['address']!r}, logging_level='ERROR')\n{code}"
    out = subprocess.run([sys.executable, "-c", script], env=clean_env(cluster["tmp"]), capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def nodes_alive(cluster: dict[str, Any]) -> int:
    """How many nodes of the cluster are alive (0 if it cannot be asked)."""
    try:
        return int(ray_query(cluster, "print(sum(1 for n in ray.nodes() if n['Alive']))"))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError, IndexError):
        return 0


def _until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1.0)
    return False


def join_second_node(cluster: dict[str, Any], nodes: list[RayNode], *, cpus: int, resources: str) -> RayNode:
    """Start the second node; on a loaded host its raylet can miss `ray start`'s fixed 30 s registration wait,
    so a failed start is retried with fresh ports and a fresh temp dir (three attempts, logs kept for the last)."""
    tmp: Path = cluster["tmp"]
    logs = []
    for attempt in range(3):
        log = tmp / f"second-{attempt}.log"
        node = RayNode([f"--address={cluster['address']}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                        f"--temp-dir={tmp / f'r2-{attempt}'}", f"--resources={resources}"], tmp, log)
        nodes.append(node)
        if _until(lambda n=node: nodes_alive(cluster) >= 2 or n.proc.poll() is not None, 120) \
                and node.proc.poll() is None:
            return node
        node.kill()
        nodes.remove(node)
        raylet = sorted((tmp / f"r2-{attempt}").glob("session_*/logs/raylet.out"))
        logs.append(log.read_text()[-2000:] + "".join(r.read_text()[-2000:] for r in raylet))
    raise RuntimeError("the second Ray node never joined:\n" + "\n---\n".join(logs))


@contextmanager
def two_nodes(*, cpus: int, head_resources: str = '{"head": 1}',
              second_resources: str = '{"second": 1}') -> Iterator[dict[str, Any]]:
    """A head and a second node of `cpus` CPUs each on this host: {"address", "tmp", "second", "head_id",
    "second_id"}; both are killed on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="cf2n-", dir="/tmp"))
    tmp.chmod(0o700)
    (tmp / "auth_token").write_text(secrets.token_hex(32))
    port = free_port()
    cluster: dict[str, Any] = {"address": f"127.0.0.1:{port}", "tmp": tmp}
    nodes = [RayNode(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                      f"--resources={head_resources}", f"--temp-dir={tmp / 'r'}", "--include-dashboard=false"],
                     tmp, tmp / "head.log")]
    try:
        if not _until(lambda: nodes_alive(cluster) >= 1, 60):
            raise RuntimeError("the head node did not start: " + (tmp / "head.log").read_text()[-2000:])
        cluster["second"] = join_second_node(cluster, nodes, cpus=cpus, resources=second_resources)
        marker = next(iter(json.loads(second_resources)))
        ids = ray_query(cluster, f"print(json.dumps({{n['NodeID']: n['Resources'].get({marker!r}, 0) "
                                 "for n in ray.nodes() if n['Alive']}))")
        cluster["second_id"] = next(i for i, m in ids.items() if m)
        cluster["head_id"] = next(i for i, m in ids.items() if not m)
        yield cluster
    finally:
        for n in reversed(nodes):
            n.kill()
