"""Content-addressed storage of clean bundles: `<root>/<sha[:2]>/<sha>.zip`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from core.bundles.model import Bundle
from core.errors import InvalidInput, NotFound

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BundleStore:
    """Immutable ZIPs addressed by their SHA-256 under a root folder (e.g. `$CLOUDFN_HOME/artifacts`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        """Where the bundle with this hash lives (whether or not it exists)."""
        if not _SHA256.match(sha256):
            raise InvalidInput(f"{sha256!r} is not a lowercase hex SHA-256")
        return self.root / sha256[:2] / f"{sha256}.zip"

    def put(self, bundle: Bundle) -> Path:
        """Store the bundle atomically (temp file, fsync, rename), mode 0644; storing it again is a no-op."""
        if hashlib.sha256(bundle.data).hexdigest() != bundle.sha256:
            raise ValueError("bundle.sha256 does not match bundle.data")
        target = self.path(bundle.sha256)
        if _holds(target, bundle.sha256):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{bundle.sha256[:12]}-", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(bundle.data)
                out.flush()
                os.fchmod(out.fileno(), 0o644)
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(target.parent)
        return target

    def read(self, sha256: str) -> bytes:
        """The stored ZIP's bytes; NotFound if absent."""
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"bundle {sha256} is not in the store") from None

    def exists(self, sha256: str) -> bool:
        """Whether the bundle is stored."""
        return self.path(sha256).is_file()

    def delete(self, sha256: str) -> None:
        """Remove the bundle; removing an absent one is a no-op."""
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()


def _holds(target: Path, sha256: str) -> bool:
    """True if `target` exists with exactly the expected content."""
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        return False
    return hashlib.sha256(data).hexdigest() == sha256


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
