"""`python -m panel_dashboard --port N`: serve the dashboard at http://127.0.0.1:N/."""

from __future__ import annotations

import argparse
import logging

import panel as pn

from panel_dashboard.app import make_page
from panel_dashboard.client import ApiClient, ApiConfig
from panel_dashboard.store import DataStore


def main(argv: list[str] | None = None) -> None:
    """Parse --port, start the one poller of this process and serve the app at `/`."""
    ap = argparse.ArgumentParser(prog="python -m panel_dashboard", description=__doc__)
    ap.add_argument("--port", type=int, default=5006)
    ap.add_argument("--address", default="127.0.0.1")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    store = DataStore(ApiClient(ApiConfig.from_env()))
    origins = [f"{h}:{a.port}" for h in ("127.0.0.1", "localhost", a.address)]

    def page() -> pn.template.FastListTemplate:
        return make_page(store)  # Panel calls plain functions per session (a functools.partial it would render)

    server = pn.serve({"/": page}, port=a.port, address=a.address, show=False, start=False,
                      title="CloudFunctions", websocket_origin=origins)
    store.start()
    server.start()
    server.io_loop.start()
