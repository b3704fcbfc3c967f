"""A folder picked in the browser (relative paths and contents) as the ZIP bundle the API deploys."""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

from panel_dashboard.client import ApiRefused

SKIPPED_PARTS = {"__pycache__", ".git"}  # a picked working copy's caches and history are not part of the code


def zip_folder(paths: list[str], contents: list[bytes]) -> bytes:
    """The files of a picked folder as a ZIP whose root is the folder itself (the browser names each file
    `<folder>/<path inside it>`); ApiRefused if the folder is empty or a path is not a plain relative one."""
    if len(paths) != len(contents):
        raise ApiRefused(0, "the folder's upload is incomplete; pick the folder again")
    entries: dict[str, bytes] = {}
    for raw, data in zip(paths, contents, strict=True):
        parts = PurePosixPath(raw.replace("\\", "/")).parts
        if not parts or parts[0] == "/" or ".." in parts:
            raise ApiRefused(0, f"the folder holds a path that is not inside it: {raw!r}")
        inner = parts[1:] if len(parts) > 1 else parts  # drop the picked folder's own name
        if SKIPPED_PARTS.intersection(inner) or inner[-1].endswith(".pyc"):
            continue
        entries["/".join(inner)] = data
    if not entries:
        raise ApiRefused(0, "the picked folder holds no files to deploy")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(entries):
            z.writestr(name, entries[name])
    return buf.getvalue()
