"""Tries to read and overwrite another function version's code directory."""
import os


def _read(path):
    with open(path) as fh:
        return fh.read()


def _write(path, text):
    with open(path, "w") as fh:
        return fh.write(text)


def handler(event, context):
    results = {}
    target = event["target"]
    for attempt, fn in {
        "list": lambda: os.listdir(target),
        "read": lambda: _read(os.path.join(target, "main.py")),
        "write": lambda: _write(os.path.join(target, "main.py"), "def handler(e, c):\n    return 'pwned'\n"),
        "create": lambda: _write(os.path.join(target, "evil.py"), "x = 1\n"),
        "list_root": lambda: os.listdir(event["root"]),
    }.items():
        try:
            results[attempt] = repr(fn())[:200]
        except OSError as exc:
            results[attempt] = f"denied: {exc.__class__.__name__}"
    return results
