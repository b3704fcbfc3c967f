"""Start the platform exactly as `cloudfn up` does, in a temporary home on free ports (for benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def zip_handler(src: str) -> bytes:
    """A ZIP holding one `main.py` with this source."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("main.py", src)
    return buf.getvalue()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PlatformProcess:
    """`cloudfn up` in a subprocess; a context manager that stops it with SIGTERM."""

    def __init__(self, extra_env: dict[str, str] | None = None, root: Path = ROOT) -> None:
        self.root = root  # the source tree it runs from (with PYTHONPATH pointing there too)
        self.home = Path(tempfile.mkdtemp(prefix="cfbench-"))
        self.api_port, self.dash_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.env = dict(os.environ, CLOUDFN_HOME=str(self.home), CLOUDFN_API_PORT=str(self.api_port),
                        CLOUDFN_DASHBOARD_PORT=str(self.dash_port), CLOUDFN_API_URL=self.url)
        for k in list(self.env):  # a user's shell: nothing from a Ray driver in the calling process (a test session)
            if k.startswith("RAY_") or k in ("PYTHONBREAKPOINT", "CLOUDFN_DATABASE_URL", "CLOUDFN_RAY_ADDRESS",
                                             "CLOUDFN_API_KEY"):
                del self.env[k]
        self.env.update(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.home / "up.log"

    def __enter__(self) -> PlatformProcess:
        cloudfn = Path(sys.executable).with_name("cloudfn")
        self.proc = subprocess.Popen([str(cloudfn), "up"], env=self.env, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cloudfn up exited: {self.log.read_text()[-2000:]}")
            try:
                healthy = httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
                if healthy and "ready; Ctrl-C" in self.log.read_text():
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("the platform did not start in 300 s")
        self.key = (self.home / "admin.key").read_text().strip()
        return self

    def client(self, **kw: object) -> httpx.Client:
        """An authenticated client."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, **kw)  # type: ignore[arg-type]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the platform (SIGTERM: clean; SIGKILL: the whole process group, as a crash)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if sig == signal.SIGKILL:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __exit__(self, *exc: object) -> None:
        self.stop()
