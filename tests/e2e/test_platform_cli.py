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

from bench.platform_proc import ROOT, PlatformProcess

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
