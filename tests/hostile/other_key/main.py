"""Tries to read and overwrite another function version's code directory."""
import os


def handler(event, context):
    results = {}
    target = event["target"]
    for attempt, fn in {
        "list": lambda: os.listdir(target),
        "read": lambda: open(os.path.join(target, "main.py")).read(),
        "write": lambda: open(os.path.join(target, "main.py"), "w").write("def handler(e, c):\n    return 'pwned'\n"),
        "create": lambda: open(os.path.join(target, "evil.py"), "w").write("x = 1\n"),
        "list_root": lambda: os.listdir(event["root"]),
    }.items():
        try:
            results[attempt] = repr(fn())[:200]
        except OSError as exc:
            results[attempt] = f"denied: {exc.__class__.__name__}"
    return results
