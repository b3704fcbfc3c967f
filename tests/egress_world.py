"""A small world for egress tests, built by the test and removed after it: a network namespace holding a
stand-in "public" host (198.51.100.10, TEST-NET-2, routed through a veth pair, never on the host's own
subnets) and a stand-in "private" host (10.199.0.10), each serving HTTP on port 8080. No packet leaves
the machine: both addresses exist only inside the namespace the test created."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

PUBLIC = "198.51.100.10"
PRIVATE = "10.199.0.10"
PORT = 8080
SERVER = ("import http.server, socketserver\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        body = self.connection.getsockname()[0].encode()\n"
          "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
          "        self.wfile.write(body)\n"
          "    def log_message(self, *a): pass\n"
          "socketserver.TCPServer.allow_reuse_address = True\n"
          "http.server.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()\n")


@dataclass
class World:
    """The namespace's name and the stand-in hosts' addresses."""

    netns: str
    public: str = PUBLIC
    private: str = PRIVATE
    port: int = PORT


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def can_build() -> str | None:
    """Why this host cannot build the world (not root, no `ip`), or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "iproute2's `ip netns` is not available"
    return None


@contextlib.contextmanager
def world() -> Iterator[World]:
    """Build the world, yield it, tear it down (namespace, veth, routes, server)."""
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"cfw-{tag}", f"cfh{tag}", f"cfn{tag}"
    server: subprocess.Popen[bytes] | None = None
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        _ip("addr", "add", "10.198.7.1/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for args in (("addr", "add", "10.198.7.2/30", "dev", ns_if), ("addr", "add", f"{PUBLIC}/32", "dev", ns_if),
                     ("addr", "add", f"{PRIVATE}/32", "dev", ns_if), ("link", "set", ns_if, "up"),
                     ("link", "set", "lo", "up"), ("route", "add", "default", "via", "10.198.7.1")):
            _ip("-n", ns, *args)
        _ip("route", "add", f"{PUBLIC}/32", "via", "10.198.7.2", "dev", host_if)
        _ip("route", "add", f"{PRIVATE}/32", "via", "10.198.7.2", "dev", host_if)
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                                    f"import socket; socket.create_connection(('{PUBLIC}', {PORT}), 1)"],
                                   capture_output=True)
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        yield World(ns)
    finally:
        if server is not None:
            server.kill()
            server.wait(5)
        for args in (("route", "del", f"{PUBLIC}/32"), ("route", "del", f"{PRIVATE}/32"),
                     ("link", "del", host_if), ("netns", "del", ns)):
            subprocess.run(["ip", *args], capture_output=True)
