"""Where the API is and which key to send: arguments first, then the variables and file the CLI reads
(CLOUDFN_API_URL, else 127.0.0.1:CLOUDFN_API_PORT; CLOUDFN_API_KEY, else $CLOUDFN_HOME/admin.key)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = "8000"


@dataclass(frozen=True)
class Connection:
    """A resolved base URL and bearer key (None: send no Authorization header)."""

    url: str
    key: str | None

    @classmethod
    def resolve(cls, url: str | None = None, key: str | None = None,
                env: Mapping[str, str] | None = None) -> Connection:
        """Explicit arguments win; otherwise the environment the CLI reads (os.environ unless `env` is given)."""
        env = os.environ if env is None else env
        base = url or env.get("CLOUDFN_API_URL") or f"http://127.0.0.1:{env.get('CLOUDFN_API_PORT') or DEFAULT_PORT}"
        return cls(base.rstrip("/"), key or env.get("CLOUDFN_API_KEY") or read_admin_key(env))

    @property
    def headers(self) -> dict[str, str]:
        """The request headers every call carries."""
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


def read_admin_key(env: Mapping[str, str]) -> str | None:
    """The admin key the platform wrote to $CLOUDFN_HOME/admin.key (default ~/.cloudfn), if readable."""
    home = Path(env.get("CLOUDFN_HOME") or Path.home() / ".cloudfn").expanduser()
    try:
        return (home / "admin.key").read_text().strip() or None
    except OSError:
        return None
