"""The console (`python -m panel_dashboard`) as the browser tests run it: on a free port, with only the API's URL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port


@contextmanager
def console_process(api_url: str, log_path: Path) -> Iterator[str]:
    """Start the console (no key of its own, none inherited), wait for its login page, yield its base URL
    (no trailing slash); terminate it afterwards. A console that exits or never answers fails the test with
    the end of its log."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("CLOUDFN_API_KEY", "CLOUDFN_HOME")}
    env["CLOUDFN_API_URL"] = api_url
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "panel_dashboard", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the console exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/login", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the console did not answer in 60 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
