"""The platform started as `cloudfn up` starts it (temporary home, free ports), driven through the CLI and
HTTP; then killed with SIGKILL mid-burst and started again: every accepted task reaches a terminal status."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.platform_proc import ROOT, PlatformProcess, zip_handler

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).with_name("cloudfn"))
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def cli(plat: PlatformProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the CLI against the platform."""
    p = subprocess.run([CLI, *args], env=plat.env, capture_output=True, text=True, timeout=180, cwd=ROOT)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def plat() -> Any:
    with PlatformProcess() as p:
        yield p


def test_cli_spine(plat: PlatformProcess) -> None:
    out = cli(plat, "deploy", "examples/hello", "--name", "hello2").stdout
    assert "hello2" in out and "version 1" in out
    rec = json.loads(cli(plat, "invoke", "hello2", "--input", '{"name": "Ada"}', "--wait").stdout)
    assert rec["status"] == "succeeded" and rec["output"]["greeting"] == "Hello, Ada!"
    assert rec["metrics"]["peak_memory_mb"] > 1
    tid = rec["task_id"]
    assert json.loads(cli(plat, "task", tid).stdout)["task_id"] == tid
    assert "greeting Ada" in cli(plat, "logs", tid).stdout
    names = [f["name"] for f in json.loads(cli(plat, "functions", "--json").stdout)]
    assert {"hello", "fail", "burn", "alloc", "hello2"} <= set(names)  # the examples were deployed by `up`
    cli(plat, "deactivate", "hello2")
    bad = cli(plat, "invoke", "hello2", "--wait", check=False)
    assert bad.returncode != 0 and "409" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    cli(plat, "activate", "hello2")
    cli(plat, "delete", "hello2")
    assert cli(plat, "task", tid).returncode == 0
    assert cli(plat, "invoke", "hello2", check=False).returncode != 0
    assert cli(plat, "task", "no-such-task", check=False).returncode != 0
    m = json.loads(cli(plat, "metrics", "hello", "--json").stdout)
    assert "count" in m and "duration_ms" in m


def test_file_modes_hold_after_start(plat: PlatformProcess) -> None:
    """CLOUDFN_HOME 0700 and its keys 0600 once every component has started; Ray's temp dir inside a parent
    only the platform's user can enter; the embedded PostgreSQL's data outside the home when run as root."""
    from cluster.ray_runtime import private_parent, ray_temp_dir
    from core.settings import Settings

    settings = Settings(home=plat.home)
    assert plat.home.stat().st_mode & 0o777 == 0o700
    assert (plat.home / "admin.key").exists() and (plat.home / "database.url").exists()
    for name in ("admin.key", "secrets.key", "database.url", "ray.address"):
        if (plat.home / name).exists():  # secrets.key appears with the first function env set
            assert (plat.home / name).stat().st_mode & 0o777 == 0o600, name
    parent = private_parent(settings)
    st = parent.lstat()
    assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.geteuid()
    assert ray_temp_dir(settings).is_relative_to(parent) and ray_temp_dir(settings).is_dir()
    if os.geteuid() == 0:
        assert not (plat.home / "pgdata").exists()
    health = httpx.get(f"{plat.url}/healthz", timeout=10).json()
    assert health["sandbox"] == ("jail" if os.geteuid() == 0 else health["sandbox"])


def test_cli_rejects_bad_input_with_one_line(plat: PlatformProcess, tmp_path: Path) -> None:
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    p = cli(plat, "deploy", str(tmp_path / "bad.zip"), "--name", "bad", check=False)
    assert p.returncode != 0 and p.stderr.startswith("cloudfn:") and "ZIP" in p.stderr
    p = cli(plat, "invoke", "hello", "--input", "{oops", check=False)
    assert p.returncode != 0 and "JSON" in p.stderr


def test_backtest_cli_prints_one_score_per_row(plat: PlatformProcess, tmp_path: Path) -> None:
    rows = ["timestamp,value"] + [f"{1700000000 + 60 * i},{10 + (i % 7) + (80 if i == 150 else 0)}"
                                  for i in range(300)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    out = cli(plat, "detect", "backtest", str(tmp_path / "s.csv")).stdout.split()
    assert len(out) == 300 and all(0.0 <= float(x) <= 1.0 for x in out)
    assert float(out[150]) == max(float(x) for x in out[100:])


def test_restart_after_sigkill_loses_no_accepted_task(tmp_path: Path) -> None:
    plat = PlatformProcess()
    with plat:
        with plat.client(timeout=30) as c:
            r = c.post("/v1/functions", data={"name": "napper", "config": json.dumps({"max_concurrency": 4})},
                       files={"archive": ("n.zip", _nap_zip(), "application/zip")})
            assert r.status_code == 201, r.text
            accepted = []
            for _ in range(120):
                r = c.post("/v1/functions/napper/invocations", json={"s": 0.2})
                assert r.status_code == 202
                accepted.append(r.json()["task_id"])
        plat.stop(signal.SIGKILL)  # mid-burst: ~100 tasks are still queued or running
        time.sleep(3)
        assert plat.proc is not None and plat.proc.poll() is not None
        plat.__enter__()  # start again on the same home and ports
        with plat.client(timeout=30) as c:
            deadline = time.monotonic() + 180
            statuses: dict[str, str] = {}
            while time.monotonic() < deadline:
                answers = {t: c.get(f"/v1/tasks/{t}") for t in accepted}
                statuses = {t: a.json()["status"] if a.status_code == 200 else f"HTTP {a.status_code}"
                            for t, a in answers.items()}
                if all(s in TERMINAL for s in statuses.values()):
                    break
                time.sleep(1)
        assert all(s in TERMINAL for s in statuses.values()), {s: list(statuses.values()).count(s)
                                                              for s in set(statuses.values())}
        lost = [t for t, s in statuses.items() if s == "failed"]
        print(json.dumps({"accepted": len(accepted), "terminal": len(statuses), "executor_lost": len(lost)}))


def _nap_zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("main.py", "import time\ndef handler(e, c):\n    time.sleep(e.get('s', 0.1))\n    return 1\n")
    return buf.getvalue()


def test_stop_leaves_nothing_running(plat: PlatformProcess) -> None:
    home = str(plat.home)
    plat.stop()
    time.sleep(3)
    left = [p for p in _procs() if home in p]
    assert not left, left
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plat.url}/healthz", timeout=2)


def _procs() -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="the jail needs root")
def test_jail_unavailable_fails_closed_and_insecure_runs_labelled() -> None:
    """`cloudfn up` with the jail's binary missing: it says why at start, deploy and invoke answer 503
    sandbox_unavailable and nothing is queued. With CLOUDFN_SANDBOX=insecure as well, functions run, the start
    warns loudly and every record says "sandbox": "insecure"."""
    with PlatformProcess(extra_env={"CLOUDFN_SANDBOX_BWRAP": "/nonexistent/bwrap"}) as p:
        log = p.log.read_text()
        assert "SANDBOX UNAVAILABLE" in log and "bwrap" in log
        with p.client(timeout=60) as c:
            assert httpx.get(f"{p.url}/healthz", timeout=10).json()["sandbox"].startswith("unavailable")
            assert c.get("/v1/functions").json()["functions"] == []  # the examples were refused too
            r = c.post("/v1/functions", data={"name": "closed"},
                       files={"archive": ("f.zip", zip_handler("def handler(e, c):\n    return 1\n"))})
            assert r.status_code == 503 and r.json()["error"]["code"] == "sandbox_unavailable", r.text
            assert c.get("/v1/tasks").json()["tasks"] == []
    with PlatformProcess(extra_env={"CLOUDFN_SANDBOX_BWRAP": "/nonexistent/bwrap",
                                    "CLOUDFN_SANDBOX": "insecure"}) as p:
        assert "CLOUDFN_SANDBOX=insecure" in p.log.read_text()
        with p.client(timeout=60) as c:
            r = c.post("/v1/functions/hello/invocations", params={"wait": 60}, json={"name": "Ada"})
            assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
            assert r.json()["sandbox"] == "insecure"
            assert c.get(f"/v1/tasks/{r.json()['task_id']}").json()["sandbox"] == "insecure"
