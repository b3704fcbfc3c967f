"""Tries to kill its supervisor, then every process it can (kill -9 -1)."""
import os
import signal


def handler(event, context):
    results = {}
    for name, pid in (("parent", os.getppid()), ("supervisor", event["supervisor_pid"])):
        try:
            os.kill(pid, signal.SIGKILL)
            results[name] = "signalled"
        except OSError as exc:
            results[name] = f"denied: {exc.__class__.__name__}"
    if event.get("all"):
        try:  # in its pid namespace there is nothing else to kill: ESRCH
            os.kill(-1, signal.SIGKILL)
            results["all"] = "signalled"
        except OSError as exc:
            results["all"] = f"denied: {exc.__class__.__name__}"
    return results
