"""An S3-compatible server for tests: moto's S3 in server mode, in its own process on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from types import TracebackType

import httpx
import pyarrow.fs as pafs

ACCESS_KEY = SECRET_KEY = "testing"
REGION = "us-east-1"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoS3:
    """`python -m moto.server` on a free port; `env` holds the AWS variables that point at it."""

    def __init__(self, *buckets: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.buckets = buckets
        self.env = {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoS3:
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        admin = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http", access_key=ACCESS_KEY,
                                  secret_key=SECRET_KEY, region=REGION, allow_bucket_creation=True)
        for bucket in self.buckets:
            admin.create_dir(bucket)
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
