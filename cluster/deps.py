"""Vendoring a version's `requirements.txt` into its own package at deploy time.

`vendor_requirements` installs the requirements with pip into a scratch dir and returns a NEW bundle:
the original entries plus the installed tree under `.deps/`, validated again with every cap. The
dependencies therefore travel inside the version's package, reach every Ray node with it, and are
installed once per version; the sandbox puts `<code>/.deps` on sys.path after the code dir, so the
function's own modules win over same-named ones in its dependencies.

Safety rules, each deliberate:
- Binary wheels only (`--only-binary=:all:`): an sdist would run its `setup.py`/build backend, i.e.
  arbitrary user-chosen code, as the platform's (possibly root) user at deploy time. A requirement that
  has no wheel for this Python and platform fails like an unknown one, with pip's output attached.
- Only plain PyPI-style requirements (`name[extras] specifiers ; marker`): no option lines (`-e`, `-r`,
  `-c`, `--index-url`, `-f`, ...), no URLs or direct references (`git+https://...`, `x @ https://...`),
  no local paths or archive file names, no `${VAR}` (pip expands environment variables in requirement
  files). The server must not fetch URLs or read local files a user names. pip is handed a rewritten
  file holding only the parsed requirements, never the user's file.
- pip runs in a clean, minimal environment (no CLOUDFN_*, RAY_* or other platform variables), keeping
  only what selects and reaches the machine's package index (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
  PIP_FIND_LINKS, PIP_TRUSTED_HOST, PIP_CONFIG_FILE, PIP_CERT, proxies) plus HOME, so the system and
  user pip config files still apply; it runs in its own process group, killed as a whole on timeout.
- The vendored tree keeps regular files only (no symlinks), drops `bin/`, `__pycache__` and `*.pyc`;
  every entry is written 0644 (shared objects only need to be readable to be loaded).

`.pth` files in the installed tree are not processed (the sandbox adds `.deps` to sys.path directly and
runs with `-S`); PEP 420 namespace packages need none.
"""

from __future__ import annotations

import io
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from packaging.requirements import InvalidRequirement, Requirement

from core.bundles import Bundle, BundleLimits, validate_and_repack
from core.bundles.repack import CleanZipWriter
from core.errors import BundleTooLarge, InvalidBundle

REQUIREMENTS = "requirements.txt"
DEPS_DIR = ".deps"
PIP_OUTPUT_LINES = 40
# What pip may still see of the platform's environment: how to find and reach the package index.
PIP_ENV_KEEP = (
    "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST", "PIP_CONFIG_FILE",
    "PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)
_ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz",
                     ".tar.lz", ".tlz", ".tar.lzma")
_COMMENT = re.compile(r"(^|\s+)#.*$")
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement (\S+)")
_UNREACHABLE = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                "Network is unreachable")


def vendor_requirements(bundle: Bundle, handler: str, limits: BundleLimits, *, python: str = sys.executable,
                        timeout_s: float = 600.0) -> Bundle:
    """Return `bundle` with its requirements installed under `.deps/` (unchanged if it has none).

    Raises InvalidBundle (`detail["reason"]` says why; `pip_output` holds pip's last lines when pip ran)
    for a requirement line that is not a plain requirement, one pip cannot resolve to a wheel, or a
    timeout; BundleTooLarge when the bundle with its dependencies breaks a size cap.
    """
    if not bundle.has_requirements:
        return bundle
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as zf:
        requirements = parse_requirements(zf.read(REQUIREMENTS))
    if not requirements:
        return bundle
    if any(f.startswith(DEPS_DIR + "/") for f in bundle.files):
        _fail("deps_dir_taken", f"the archive holds a {DEPS_DIR}/ folder and a {REQUIREMENTS}: {DEPS_DIR}/ is "
              f"where the requirements are installed; remove one of them")
    with tempfile.TemporaryDirectory(prefix="cloudfn-deps-") as tmp:
        work = Path(tmp)
        (work / "requirements.txt").write_text("".join(r + "\n" for r in requirements))
        target = work / "target"
        _pip_install(python, work, target, timeout_s)
        deps = sorted(_installed_files(target))
        deps_bytes = sum(size for _, _, size in deps)
        if bundle.unpacked_bytes + deps_bytes > limits.max_unpacked_bytes:
            raise BundleTooLarge(
                f"the requirements install {deps_bytes} bytes; with the code's {bundle.unpacked_bytes} bytes "
                f"that exceeds the unpacked size cap of {limits.max_unpacked_bytes} bytes",
                detail={"reason": "unpacked_too_large", "entry": REQUIREMENTS})
        data = _merge(bundle, deps)
    try:
        return validate_and_repack(data, handler, limits)
    except BundleTooLarge as exc:
        raise BundleTooLarge(f"with its requirements installed, the bundle breaks a cap: {exc.message}",
                             detail=exc.detail) from None
    except InvalidBundle as exc:
        raise InvalidBundle(f"the installed requirements cannot be packaged: {exc.message}",
                            detail=exc.detail) from None


def parse_requirements(raw: bytes) -> list[str]:
    """The requirements of a requirements.txt, normalised; InvalidBundle naming the first line that is not plain."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        _fail("bad_requirement", f"{REQUIREMENTS} is not UTF-8 text")
    out: list[str] = []
    for number, line in _logical_lines(text):
        line = _COMMENT.sub("", line).strip()
        if not line:
            continue
        where = f"{REQUIREMENTS} line {number}: {line!r}"
        if line.startswith("-"):
            _fail("bad_requirement", f"{where}: pip options are not allowed; list plain requirements such as "
                  f"'name==1.2' (the platform's package index is used)", line)
        if "$" in line:
            _fail("bad_requirement", f"{where}: environment variables are not allowed in requirements", line)
        try:
            req = Requirement(line)
        except InvalidRequirement:
            _fail("bad_requirement", f"{where}: not a plain requirement ('name[extras] specifiers; marker'); "
                  f"URLs, VCS links and local paths are not allowed", line)
        if req.url is not None:
            _fail("bad_requirement", f"{where}: direct references (name @ url) are not allowed", line)
        if req.name.lower().endswith(_ARCHIVE_SUFFIXES):
            _fail("bad_requirement", f"{where}: archive files are not allowed; name the package instead", line)
        out.append(str(req))
    return out


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines joined across trailing backslashes, each with the number of its first physical line."""
    buf, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1]
            continue
        yield start, buf + line
        buf = ""
    if buf:
        yield start, buf


def _pip_install(python: str, work: Path, target: Path, timeout_s: float) -> None:
    """Run pip into `target`; InvalidBundle with pip's last lines when it fails or times out."""
    cmd = [python, "-m", "pip", "install", "--target", str(target), "--no-input", "--disable-pip-version-check",
           "--no-compile", "--only-binary=:all:", "--progress-bar", "off", "-r", str(work / "requirements.txt")]
    env = {k: os.environ[k] for k in PIP_ENV_KEEP if k in os.environ}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        _fail("requirements_timeout", f"installing the requirements took longer than {timeout_s:g} s",
              pip_output=_tail(out))
    finally:
        if proc.poll() is None:  # interrupted (e.g. the deploy was cancelled): leave nothing running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        _raise_pip_failure(out.decode("utf-8", "replace"), proc.returncode)


def _raise_pip_failure(text: str, returncode: int) -> NoReturn:
    """Turn pip's output into a clear error naming the requirement that failed."""
    if "No module named pip" in text:
        raise RuntimeError(f"pip is not available to the deploy's Python: {text.strip()[-500:]}")
    tail = _tail(text.encode())
    match = _NO_MATCH.search(text) or _NO_VERSION.search(text)
    if match:
        name = match.group(1)
        hint = ("the package index could not be reached" if any(s in text for s in _UNREACHABLE) else
                "no binary wheel for this Python and platform matches it (source distributions are not built)")
        raise InvalidBundle(f"requirement {name!r} in {REQUIREMENTS} could not be installed: {hint}",
                            detail={"reason": "requirement_unresolvable", "entry": REQUIREMENTS,
                                    "requirement": name, "pip_output": tail})
    if "ResolutionImpossible" in text or "conflicting dependencies" in text:
        _fail("requirements_conflict", f"the requirements in {REQUIREMENTS} conflict with each other",
              pip_output=tail)
    _fail("requirements_failed", f"pip could not install {REQUIREMENTS} (exit status {returncode})", pip_output=tail)


def _installed_files(target: Path) -> Iterator[tuple[str, Path, int]]:
    """(entry name under .deps/, path, size) of each regular file pip installed, minus bin/ and bytecode."""
    if not target.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(target):
        rel_dir = os.path.relpath(dirpath, target)
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not (rel_dir == "." and d == "bin")]
        for name in filenames:
            if name.endswith(".pyc"):
                continue
            path = Path(dirpath, name)
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode):  # symlinks, fifos, ...
                continue
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            yield f"{DEPS_DIR}/{rel}", path, st.st_size


def _merge(bundle: Bundle, deps: list[tuple[str, Path, int]]) -> bytes:
    """A deterministic ZIP of the bundle's entries and the installed files, in name order."""
    items: list[tuple[str, Path | None, int]] = [(n, None, 0) for n in bundle.files]
    items += [(n, p, s) for n, p, s in deps]
    items.sort(key=lambda i: i[0])
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as zf, CleanZipWriter() as writer:
        for name, path, size in items:
            if path is None:
                info = zf.getinfo(name)
                writer.add(name, _chunks_zip(zf, name), info.file_size)
            else:
                writer.add(name, _chunks_file(path), size)
        return writer.finish()


def _chunks_zip(zf: zipfile.ZipFile, name: str) -> Iterator[bytes]:
    with zf.open(name) as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _chunks_file(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _tail(out: bytes) -> str:
    lines = out.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-PIP_OUTPUT_LINES:])


def _fail(reason: str, message: str, line: str | None = None, *, pip_output: str | None = None) -> NoReturn:
    detail: dict[str, object] = {"reason": reason, "entry": REQUIREMENTS}
    if line is not None:
        detail["line"] = line
    if pip_output is not None:
        detail["pip_output"] = pip_output
    raise InvalidBundle(message, detail=detail)
