"""Prints 1 GB."""
import os
import sys


def handler(event, context):
    line = "p" * (1024 * 1024)
    for _ in range(1024):
        print(line)
        sys.stderr.write(line)
        os.write(1, b"q" * 65536)
    return "printed"
