"""Looks for the platform's environment and for files under $CLOUDFN_HOME."""
import os


def handler(event, context):
    leaked = {k: v for k, v in os.environ.items() if k.startswith(("RAY_", "CLOUDFN_")) or "DATABASE" in k}
    home = os.environ.get("CLOUDFN_HOME") or event["home"]
    found = {}
    try:
        for name in os.listdir(home):
            with open(os.path.join(home, name)) as fh:
                found[name] = fh.read()
    except OSError:
        pass
    try:
        with open(f"/proc/{os.getppid()}/environ", "rb") as fh:
            found["parent_environ"] = fh.read(100).decode("latin-1")
    except OSError:
        pass
    return {"env": leaked, "home_files": found, "all_env": sorted(os.environ)}
