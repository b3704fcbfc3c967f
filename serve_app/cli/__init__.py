"""The command line (`cloudfn`, on the SDK's HTTP client) and the launcher of `cloudfn up`. Apart from the Serve
app: nothing else in `serve_app` imports it; it imports `deployment` only to launch it."""

from serve_app.cli.main import main

__all__ = ["main"]
