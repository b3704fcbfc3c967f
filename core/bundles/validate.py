"""`validate_and_repack`: the whole intake of an uploaded ZIP, from raw bytes to a clean Bundle."""

from __future__ import annotations

import hashlib

from core.bundles.entries import read_entries
from core.bundles.errors import reject
from core.bundles.inflate import iter_content
from core.bundles.model import Bundle, BundleLimits
from core.bundles.repack import CleanZipWriter
from core.errors import InvalidInput
from core.models import NODE_EXTENSIONS, NODE_RUNTIME, PYTHON_RUNTIME, handler_module_path, node_handler_path

REQUIREMENTS = "requirements.txt"


def validate_and_repack(data: bytes, handler: str, limits: BundleLimits, runtime: str = PYTHON_RUNTIME) -> Bundle:
    """Reject every ZIP hazard and a handler module (or Node.js file) that is not in the archive; return the
    clean bundle.

    Raises InvalidInput for a handler string that does not parse, BundleTooLarge for size and count
    caps, InvalidBundle for everything else; `exc.detail` holds `reason` and, where there is one, `entry`.
    """
    module_path = _module_path(handler, runtime)
    entries = read_entries(data, limits)
    files = sorted((e for e in entries if not e.is_dir), key=lambda e: e.path)
    if not files:
        reject("no_files", "the archive holds only directories and no files")
    if runtime == NODE_RUNTIME:
        _check_node_handler(handler, module_path, [e.path for e in files])
    else:
        _check_handler(handler, module_path, [e.path for e in files])
    total = 0
    with CleanZipWriter() as writer:
        for entry in files:
            total += writer.add(entry.path, iter_content(data, entry), entry.raw.file_size)
        clean = writer.finish()
    names = tuple(e.path for e in files)
    return Bundle(
        data=clean,
        sha256=hashlib.sha256(clean).hexdigest(),
        files=names,
        unpacked_bytes=total,
        has_requirements=REQUIREMENTS in names,
    )


def _module_path(handler: str, runtime: str) -> str:
    try:
        return node_handler_path(handler)[0] if runtime == NODE_RUNTIME else handler_module_path(handler)[0]
    except ValueError as exc:
        raise InvalidInput(str(exc), detail={"reason": "bad_handler", "handler": handler}) from None


def _check_handler(handler: str, module_path: str, paths: list[str]) -> None:
    """The handler's module (`mod.py` or the package `mod/__init__.py`) must be in the archive."""
    if module_path in paths or module_path.removesuffix(".py") + "/__init__.py" in paths:
        return
    top = [p for p in paths if "/" not in p and p.endswith(".py")]
    found = ", ".join(top[:20]) + (", ..." if len(top) > 20 else "") if top else "none"
    hint = ""
    nested = [p for p in paths if p.endswith("/" + module_path)]
    if nested:
        hint = (
            f"; found {nested[0]}: zip the folder's contents rather than the folder, or name the "
            "handler with its package path"
        )
    reject(
        "handler_missing",
        f"handler {handler!r} needs {module_path}, which is not in the archive; "
        f"top-level .py files found: {found}{hint}",
        entry=module_path,
    )


def _check_node_handler(handler: str, file_stem: str, paths: list[str]) -> None:
    """The handler's file (`file.js`, `.mjs` or `.cjs`, as Lambda's Node.js runtime looks for it) must be in
    the archive."""
    if any(file_stem + ext in paths for ext in NODE_EXTENSIONS):
        return
    top = [p for p in paths if "/" not in p and p.endswith(NODE_EXTENSIONS)]
    found = ", ".join(top[:20]) + (", ..." if len(top) > 20 else "") if top else "none"
    nested = [p for p in paths if p.rpartition(".")[0].endswith("/" + file_stem) and p.endswith(NODE_EXTENSIONS)]
    hint = (f"; found {nested[0]}: zip the folder's contents rather than the folder, or name the handler with "
            "its path") if nested else ""
    reject(
        "handler_missing",
        f"handler {handler!r} needs {file_stem}.js (or .mjs, .cjs), which is not in the archive; "
        f"top-level .js files found: {found}{hint}",
        entry=file_stem + ".js",
    )
