"""Serves the dashboard (a placeholder page until the Panel app lands)."""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"<html><head><title>CloudFunctions</title></head><body><h1>CloudFunctions</h1>" \
       b"<p>The dashboard is being built.</p></body></html>"


class _Placeholder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    """Parse --port and serve."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5006)
    a = ap.parse_args()
    ThreadingHTTPServer(("127.0.0.1", a.port), _Placeholder).serve_forever()
