"""API keys: generated once, stored as a 0600 file for the CLI, only their SHA-256 in the database."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, insert, select

from core.db.keys import hash_key, new_key
from core.db.tables import ApiKey
from core.models import DEFAULT_NAMESPACE

__all__ = ["ensure_admin_key", "hash_key"]


def ensure_admin_key(engine: Engine, path: Path) -> str:
    """Create the operator's key (an admin of the default tenant) on first start (file mode 0600); re-register
    its hash if the database is new."""
    if path.exists():
        key = path.read_text().strip()
    else:
        key = new_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    os.chmod(path, 0o600)
    digest = hash_key(key)
    with engine.begin() as conn:
        found = conn.execute(select(ApiKey.id).where(ApiKey.key_hash == digest)).first()
        if found is None:
            conn.execute(insert(ApiKey).values(
                namespace=DEFAULT_NAMESPACE, name="admin", key_hash=digest, is_admin=True, role="admin",
                prefix=key[:12]))
    return key
