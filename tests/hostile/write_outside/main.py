"""Tries to write outside its working dir: a root-owned 0755 dir, /etc, its own code, the host's /tmp."""
import os


def handler(event, context):
    results = {}
    for path in [*event["paths"], "/etc/cloudfn-hostile", os.path.join(os.environ["LAMBDA_TASK_ROOT"], "x.py")]:
        try:
            with open(path, "w") as fh:
                fh.write("owned")
            results[path] = "written"
        except OSError as exc:
            results[path] = f"denied: {exc.__class__.__name__}"
    with open("/tmp/" + event["tmp_name"], "w") as fh:  # allowed, but only in its private /tmp
        fh.write("private")
    with open("scratch.txt", "w") as fh:  # its working dir: allowed
        fh.write("ok")
    with open("scratch.txt") as fh:
        results["cwd_ok"] = fh.read()
    return results
