"""Tries to read Ray's auth token, files under Ray's temp dir and a world-readable secret planted in /tmp."""
import glob
import os


def _try_read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read(64).decode("utf-8", "replace")
    except OSError as exc:
        return None if exc.errno else None


def handler(event, context):
    paths = [os.path.expanduser("~/.ray/auth_token"), "/root/.ray/auth_token", *event["paths"]]
    paths += glob.glob("/tmp/ray/**/*", recursive=True)[:200]
    read = {p: c for p in paths if (c := _try_read(p)) is not None}
    listed = {d: os.listdir(d) for d in ("/tmp/ray", "/root", event["dir"])
              if os.path.isdir(d) and os.access(d, os.R_OK)}
    return {"read": read, "listed": {d: v for d, v in listed.items() if v}}
