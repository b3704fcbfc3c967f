"""Two Ray nodes on one host, the platform joined to them: functions run on both, the monitoring actors work
from the second node, and stopping the second node mid-burst loses no accepted task."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from bench.platform_proc import PlatformProcess, free_port, zip_handler
from tests.integration.test_monitoring import SECRET, Receiver, signature_ok, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
RAY = Path(sys.executable).with_name("ray")
SLEEPER = ("import time\n"
           "def handler(event, context):\n"
           "    time.sleep(float(event.get('ms', 10)) / 1000)\n"
           "    return {'ok': True}\n")
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


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


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    """A head node and a second node offering the `monitor` resource, both on this host."""
    tmp = Path(tempfile.mkdtemp(prefix="cf2n-", dir="/tmp"))
    tmp.chmod(0o700)
    (tmp / "auth_token").write_text(secrets.token_hex(32))
    port = free_port()
    address = f"127.0.0.1:{port}"
    where = {"address": address, "tmp": tmp}
    head = RayNode(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                    '--resources={"head": 1}',
                    f"--temp-dir={tmp / 'r'}", "--include-dashboard=false"], tmp, tmp / "head.log")
    nodes = [head]
    try:
        wait_for(lambda: _nodes_alive(where) >= 1, 60, 1.0)
        second = _join_second_node(address, tmp, where, nodes)
        ids = ray_query(where, "print(json.dumps({n['NodeID']: n['Resources'].get('monitor', 0) "
                                 "for n in ray.nodes() if n['Alive']}))")
        yield {**where, "second": second,
               "second_id": next(i for i, m in ids.items() if m), "head_id": next(i for i, m in ids.items() if not m)}
    finally:
        for n in reversed(nodes):
            n.kill()


def _join_second_node(address: str, tmp: Path, where: dict[str, Any], nodes: list[RayNode]) -> RayNode:
    """Start the second node; on a loaded host its raylet can miss `ray start`'s fixed 30 s registration wait,
    so a failed start is retried with fresh ports and a fresh temp dir (three attempts, logs kept for the last)."""
    logs = []
    for attempt in range(3):
        # a temp dir of its own: by default a node uses the head's, and two nodes on one host would then share
        # (and garbage-collect) one runtime_resources dir
        log = tmp / f"second-{attempt}.log"
        node = RayNode([f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                        f"--temp-dir={tmp / f'r2-{attempt}'}", '--resources={"monitor": 1}'], tmp, log)
        nodes.append(node)
        if wait_for(lambda n=node: _nodes_alive(where) >= 2 or n.proc.poll() is not None, 120, 1.0) \
                and node.proc.poll() is None:
            return node
        node.kill()
        nodes.remove(node)
        raylet = sorted((tmp / f"r2-{attempt}").glob("session_*/logs/raylet.out"))
        logs.append(log.read_text()[-2000:] + "".join(r.read_text()[-2000:] for r in raylet))
    raise AssertionError("the second Ray node never joined:\n" + "\n---\n".join(logs))


def _nodes_alive(where: dict[str, Any]) -> int:
    try:
        return int(ray_query(where, "print(sum(1 for n in ray.nodes() if n['Alive']))"))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError, IndexError):
        return 0


@pytest.fixture(scope="module")
def platform(cluster: dict[str, Any]) -> Iterator[PlatformProcess]:
    """`cloudfn up` joined to the two-node cluster; one Serve proxy (two on one host would share a port)."""
    serve = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    serve["proxy_location"] = "HeadOnly"
    # the API replica on the head: losing the second node is the loss of a worker node, not of the replica
    # (a SIGKILLed replica has tests of its own)
    serve["applications"][0]["deployments"][0]["ray_actor_options"]["resources"] = {"head": 0.001}
    cfg = cluster["tmp"] / "serve.yaml"
    cfg.write_text(yaml.safe_dump(serve))
    with PlatformProcess(extra_env={"CLOUDFN_RAY_ADDRESS": cluster["address"], "CLOUDFN_SERVE_CONFIG": str(cfg),
                                    "CLOUDFN_MONITOR_RESOURCE": "monitor", **ray_env(cluster["tmp"])}) as p:
        yield p


def deploy(c: httpx.Client, name: str, config: dict[str, Any] | None = None) -> None:
    files = {"archive": ("f.zip", zip_handler(SLEEPER), "application/zip")}
    r = c.post("/v1/functions", files=files, data={"name": name, "config": json.dumps(config or {})})
    assert r.status_code == 201, r.text


def burst(c: httpx.Client, name: str, n: int, ms: int) -> list[str]:
    ids = []
    for _ in range(n):
        r = c.post(f"/v1/functions/{name}/invocations", json={"ms": ms})
        assert r.status_code == 202, r.text
        ids.append(r.json()["task_id"])
    return ids


def records(c: httpx.Client, ids: list[str], timeout_s: float = 180) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    recs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(recs) < len(ids):
        try:  # the API replica may have run on a lost node: while Serve starts it again, reads fail or get 503
            r = c.post("/v1/tasks/lookup", json={"ids": [i for i in ids if i not in recs]})
        except httpx.HTTPError:
            r = None
        if r is not None and r.status_code == 200:
            recs.update({t["task_id"]: t for t in r.json()["tasks"] if t["status"] in TERMINAL})
        time.sleep(0.5)
    return [recs.get(i) or c.get(f"/v1/tasks/{i}").json() for i in ids]


def test_functions_run_on_both_nodes(platform: PlatformProcess, cluster: dict[str, Any]) -> None:
    with platform.client(timeout=60) as c:
        deploy(c, "spread", {"max_concurrency": 32})
        recs = records(c, burst(c, "spread", 32, 1500))
    assert all(r["status"] == "succeeded" for r in recs), [(r["status"], r["error"], r["node"]) for r in recs]
    assert {r["node"] for r in recs} == {cluster["head_id"], cluster["second_id"]}


def test_monitoring_actors_work_from_the_second_node(platform: PlatformProcess, cluster: dict[str, Any]) -> None:
    placed = ray_query(cluster, (  # GCS's actor table (the state API needs the dashboard, which is off here)
        "from ray._private.state import actors\n"
        "print(json.dumps({a['Name']: a['Address']['NodeID'] for a in actors().values() "
        "if a['State'] == 'ALIVE' and a['Name'] in ('cloudfn-alerts', 'cloudfn-detector-0')}))"))
    assert placed == {"cloudfn-alerts": cluster["second_id"], "cloudfn-detector-0": cluster["second_id"]}
    hook = Receiver()
    try:
        with platform.client(timeout=60) as c:
            deploy(c, "jumpy2n")
            rule = {"name": "jumpy2n-anomaly", "function": "jumpy2n", "kind": "anomaly",
                    "channels": [{"type": "webhook", "url": f"{hook.url}/hook", "secret": SECRET}]}
            assert c.post("/v1/alert-rules", json=rule).status_code == 201
            for _ in range(100):
                assert c.post("/v1/functions/jumpy2n/invocations", params={"wait": 60},
                              json={"ms": "0010"}).status_code == 200
            for _ in range(5):  # 10 ms → 1.5 s, inputs of the same size (only the duration moves)
                c.post("/v1/functions/jumpy2n/invocations", params={"wait": 60}, json={"ms": "1500"})
            found = wait_for(lambda: c.get("/v1/anomalies", params={"function": "jumpy2n"}).json()["anomalies"], 90)
            assert found, "the detector on the second node raised nothing after a 50x slowdown"
        delivered = wait_for(lambda: [q for q in hook.requests if q["status"] == 200], 60)
        assert delivered and signature_ok(delivered[0], SECRET)
    finally:
        hook.close()


def test_stopping_the_second_node_mid_burst_loses_nothing(platform: PlatformProcess,
                                                           cluster: dict[str, Any]) -> None:
    with platform.client(timeout=60) as c:
        deploy(c, "survivor", {"max_concurrency": 32, "max_retries": 2})
        ids = burst(c, "survivor", 48, 2000)
        time.sleep(1.5)  # tasks running on both nodes
        cluster["second"].kill()
        recs = records(c, ids, 300)
    statuses = [r["status"] for r in recs]
    assert all(s in TERMINAL for s in statuses), statuses  # every accepted task ended
    lost = [r for r in recs if r["status"] != "succeeded"]
    assert all(r["error"]["type"] in ("ExecutorLost", "WorkerCrashed") for r in lost), lost
    assert any(r["status"] == "succeeded" and r["node"] == cluster["head_id"] for r in recs)
