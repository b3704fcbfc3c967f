"""The SDK's local parts: folder bundles identical to the platform's own, where the URL and key come from, and
which exception an error answer becomes."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from cloudfn import Connection, LocalInputError, zip_folder
from cloudfn.errors import (
    ApiError,
    BundleTooLargeError,
    ConflictError,
    ForbiddenError,
    HandlerCheckError,
    InvalidInputError,
    NotFoundError,
    OverloadedError,
    SandboxUnavailableError,
    ServerError,
    ServiceUnavailableError,
    UnauthorizedError,
    from_response,
)
from core.bundles import zip_folder as platform_zip_folder

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir()))
def test_folder_bundle_is_byte_identical_to_the_platforms(example: str) -> None:
    assert zip_folder(ROOT / "examples" / example) == platform_zip_folder(ROOT / "examples" / example)


def test_folder_bundle_skips_junk_and_refuses_symlinks(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "main.py").write_text("def handler(e, c):\n    return 1\n")
    (tmp_path / "pkg" / "mod.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"junk")
    (tmp_path / "main.pyc").write_bytes(b"junk")
    assert zip_folder(tmp_path) == platform_zip_folder(tmp_path)
    os.symlink("/etc/passwd", tmp_path / "link")
    with pytest.raises(LocalInputError, match="symbolic link"):
        zip_folder(tmp_path)
    with pytest.raises(LocalInputError, match="not a folder"):
        zip_folder(tmp_path / "missing")


def test_connection_arguments_win_over_the_environment(tmp_path: Path) -> None:
    (tmp_path / "admin.key").write_text("file-key\n")
    env = {"CLOUDFN_API_URL": "http://api.example:9000/", "CLOUDFN_API_KEY": "env-key", "CLOUDFN_HOME": str(tmp_path)}
    assert Connection.resolve("http://given:1/", "given-key", env=env) == Connection("http://given:1", "given-key")
    assert Connection.resolve(env=env) == Connection("http://api.example:9000", "env-key")
    assert Connection.resolve(env={"CLOUDFN_HOME": str(tmp_path), "CLOUDFN_API_PORT": "18000"}) == \
        Connection("http://127.0.0.1:18000", "file-key")
    assert Connection.resolve(env={"CLOUDFN_HOME": str(tmp_path / "none")}) == Connection("http://127.0.0.1:8000", None)
    assert Connection("http://x", "k").headers == {"Authorization": "Bearer k"}
    assert Connection("http://x", None).headers == {}


@pytest.mark.parametrize(("status", "code", "cls"), [
    (400, "invalid_input", InvalidInputError), (400, "invalid_bundle", InvalidInputError),
    (413, "bundle_too_large", BundleTooLargeError), (422, "handler_check_failed", HandlerCheckError),
    (401, "unauthorized", UnauthorizedError), (403, "forbidden", ForbiddenError), (404, "not_found", NotFoundError),
    (409, "conflict", ConflictError), (429, "overloaded", OverloadedError),
    (503, "sandbox_unavailable", SandboxUnavailableError), (503, "http_error", ServiceUnavailableError),
    (500, "internal", ServerError), (405, "method_not_allowed", ApiError),
])
def test_error_answers_map_to_one_hierarchy(status: int, code: str, cls: type[ApiError]) -> None:
    r = httpx.Response(status, json={"error": {"code": code, "message": "why", "missing": {"email": ["x"]}}},
                       headers={"Retry-After": "3"})
    err = from_response(r)
    assert type(err) is cls and err.status == status and err.code == code and err.message == "why"
    assert err.detail == {"missing": {"email": ["x"]}} and str(err) == f"HTTP {status}: why"
    if isinstance(err, OverloadedError):
        assert err.retry_after_s == 3


def test_a_body_without_the_error_shape_keeps_its_text() -> None:
    err = from_response(httpx.Response(502, text="bad gateway from the proxy"))
    assert isinstance(err, ServerError) and err.code == "http_502" and err.message == "bad gateway from the proxy"
