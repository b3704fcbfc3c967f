"""Writes a forged, oversized frame header into every fd it has, including the pipe to its supervisor."""
import contextlib
import os


def handler(event, context):
    for fd in range(3, 64):
        with contextlib.suppress(OSError):
            os.write(fd, b"\xff" * 12)
    return "forged"
