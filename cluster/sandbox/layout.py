"""On-disk layout of the sandbox root: per-key uid allocation and the per-key code, deps and work dirs.

    /var/lib/cloudfn/sandbox/uids.json   key digest -> uid for the whole host (flock on uids.lock)

    <root>/                  0711 root   (traversable, not listable)
    <root>/k/<digest>/       0750 root:<key gid>
        code/, deps/         0750/0640 root:<key gid>: readable, not writable, by the sandbox uid
        code/.deps/          a bundle's vendored requirements (cluster.deps), used when there is no deps/
        work/                0700 <key uid>: its private scratch dir (a private tmpfs when namespaced)

Without root everything belongs to the platform's uid and the modes are what protects the dirs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from .mode import SandboxUnavailable

UID_BASE = int(os.environ.get("CLOUDFN_SANDBOX_UID_BASE", "1500000"))
CHECK_UIDS = 4096  # [UID_BASE, UID_BASE + CHECK_UIDS): one-shot activation checks, picked at random
KEY_UIDS = 1_000_000
# One table per host, whatever the pool root: two functions never share a uid on this host.
UID_TABLE = Path(os.environ.get("CLOUDFN_SANDBOX_UID_TABLE", "/var/lib/cloudfn/sandbox"))


@dataclass(frozen=True)
class KeyDirs:
    """Where one key's sandbox lives and which identity it runs as."""

    key_dir: Path
    code: Path
    deps: Path | None
    work: Path
    uid: int
    gid: int


def is_root() -> bool:
    """True when the supervisor can switch uids and build namespaces."""
    return os.geteuid() == 0


def digest(key: str) -> str:
    """Directory name for a key."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def ensure_root(root: Path) -> None:
    """Create the sandbox root, owned by us, traversable but not listable by others."""
    root.mkdir(parents=True, exist_ok=True)
    st = root.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(f"sandbox root {root} is not a directory owned by uid {os.geteuid()}")
    os.chmod(root, 0o711)
    (root / "k").mkdir(mode=0o711, exist_ok=True)
    if is_root():  # bwrap runs as the key's uid and must reach the runtime and code under the root
        for parent in root.resolve().parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                raise SandboxUnavailable(f"sandbox root {root}: {parent} is not searchable by other users, "
                                         "so no sandbox uid can reach the jail's runtime")


def allocate_uid(root: Path, key: str) -> int:
    """The key's uid, stable across pools on this host (allocated once, under a file lock)."""
    if not is_root():
        return os.getuid()
    d = digest(key)
    UID_TABLE.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(UID_TABLE / "uids.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = UID_TABLE / "uids.json"
        table: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
        uid = table.get(d)
        if uid is None:
            uid = UID_BASE + CHECK_UIDS + len(table)
            if uid >= UID_BASE + CHECK_UIDS + KEY_UIDS:
                raise RuntimeError("sandbox uid range exhausted")
            table[d] = uid
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(table))
            os.replace(tmp, path)
    return uid


def check_uid() -> int:
    """A uid for a one-shot activation check."""
    return UID_BASE + secrets.randbelow(CHECK_UIDS) if is_root() else os.getuid()


def _copy_readonly(src: Path, dst_final: Path, gid: int) -> None:
    """Copy a tree so the key's group can read it and nobody but root can change it (atomic rename)."""
    if dst_final.exists():
        if not is_root() or dst_final.stat().st_gid == gid:
            return
        shutil.rmtree(dst_final)  # made for another uid (an older uid table): the key's uid could not read it
    tmp = dst_final.with_name(f".{dst_final.name}.{secrets.token_hex(6)}")
    shutil.copytree(src, tmp, symlinks=True, copy_function=shutil.copyfile)
    root = is_root()
    for dirpath, dirnames, filenames in os.walk(tmp):
        for name in [*dirnames, *filenames, None]:
            p = os.path.join(dirpath, name) if name else dirpath
            if os.path.islink(p):
                continue
            if root:
                os.chown(p, 0, gid)
            os.chmod(p, 0o750 if os.path.isdir(p) else 0o640)
    try:
        os.rename(tmp, dst_final)
    except OSError:  # another pool won the race
        shutil.rmtree(tmp, ignore_errors=True)


def prepare(root: Path, key: str, code_dir: Path, uid: int, *, one_shot: bool = False) -> KeyDirs:
    """Make the key's dirs (idempotent): copy code (and `<code_dir>/../deps` if present), create work.

    `deps` (on sys.path after `code`) is the copied `../deps`, else the bundle's own `code/.deps`.
    """
    gid = uid
    key_dir = root / ("c" if one_shot else "k") / (secrets.token_hex(16) if one_shot else digest(key))
    key_dir.parent.mkdir(mode=0o711, exist_ok=True)
    key_dir.mkdir(mode=0o750, exist_ok=True)
    if is_root():
        os.chown(key_dir, 0, gid)
    os.chmod(key_dir, 0o750)
    code = key_dir / "code"
    _copy_readonly(code_dir, code, gid)
    deps_src = code_dir.parent / "deps"
    deps: Path | None = None
    if deps_src.is_dir():
        deps = key_dir / "deps"
        _copy_readonly(deps_src, deps, gid)
    elif (code / ".deps").is_dir():  # requirements vendored into the bundle (cluster.deps)
        deps = code / ".deps"
    work = key_dir / "work"
    work.mkdir(mode=0o700, exist_ok=True)
    if is_root():
        os.chown(work, uid, gid)
    os.chmod(work, 0o700)
    return KeyDirs(key_dir=key_dir, code=code, deps=deps, work=work, uid=uid, gid=gid)


def remove(dirs: KeyDirs) -> None:
    """Delete a key's dirs (one-shot checks)."""
    shutil.rmtree(dirs.key_dir, ignore_errors=True)
