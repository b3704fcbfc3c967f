"""cluster.deps: requirements vendored under .deps/, line rules, pip failures, caps, pip's environment."""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from cluster.deps import parse_requirements, vendor_requirements
from core.bundles import Bundle, BundleLimits, validate_and_repack
from core.errors import BundleTooLarge, InvalidBundle

LIMITS = BundleLimits()
HANDLER_SRC = "def handler(event, context):\n    return 'ok'\n"


@functools.cache
def pypi_unreachable() -> str | None:
    """Why pip cannot fetch a wheel from the machine's index (None when it can); probed once per session."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
                 "--disable-pip-version-check", "-d", tmp, "six==1.16.0"],
                capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            return "pip download six==1.16.0 timed out after 180 s"
    if proc.returncode != 0:
        return "pip cannot reach the package index: " + (proc.stdout + proc.stderr).strip()[-300:]
    return None


def require_index() -> None:
    """Skip the calling test when the package index is unreachable."""
    reason = pypi_unreachable()
    if reason:
        pytest.skip(reason)


def make_bundle(requirements: str | None, files: dict[str, str] | None = None) -> Bundle:
    """A validated bundle holding main.py (unless `files` has its own), `files` and, unless None, requirements.txt."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in {"main.py": HANDLER_SRC, **(files or {})}.items():
            zf.writestr(name, text)
        if requirements is not None:
            zf.writestr("requirements.txt", requirements)
    return validate_and_repack(buf.getvalue(), "main.handler", LIMITS)


@pytest.fixture(scope="module")
def six_vendored() -> tuple[Bundle, Bundle]:
    require_index()
    src = make_bundle("six==1.16.0\n")
    return src, vendor_requirements(src, "main.handler", LIMITS)


def test_no_requirements_returns_the_bundle() -> None:
    bundle = make_bundle(None)
    assert vendor_requirements(bundle, "main.handler", LIMITS, python="/nonexistent/python") is bundle


def test_comment_only_requirements_returns_the_bundle() -> None:
    bundle = make_bundle("# nothing yet\n\n   \n")
    assert vendor_requirements(bundle, "main.handler", LIMITS, python="/nonexistent/python") is bundle


def test_parse_requirements_normalises() -> None:
    text = b"six==1.16.0  # pinned\n\n# comment\nmsgpack >=1.0, <2 ; python_version >= '3.8'\nPyYAML\\\n[foo]\n"
    assert parse_requirements(text) == ["six==1.16.0", 'msgpack<2,>=1.0; python_version >= "3.8"', "PyYAML[foo]"]


@pytest.mark.parametrize("line", [
    "-e .",
    "git+https://github.com/benjaminp/six.git",
    "--index-url x",
    "/etc/passwd",
    "-r /etc/passwd",
    "-c constraints.txt",
    "-f https://example.com/wheels/",
    "--extra-index-url=https://example.com/simple",
    "six @ https://example.com/six-1.16.0-py2.py3-none-any.whl",
    "https://example.com/six-1.16.0-py2.py3-none-any.whl",
    "./vendor/six",
    "../six",
    "six-1.16.0-py2.py3-none-any.whl",
    "six===${HOME}",
])
def test_non_plain_lines_rejected_without_running_pip(line: str) -> None:
    bundle = make_bundle(f"six==1.16.0\n{line}\n")
    # A nonexistent interpreter: running pip would raise FileNotFoundError, not InvalidBundle.
    with pytest.raises(InvalidBundle) as info:
        vendor_requirements(bundle, "main.handler", LIMITS, python="/nonexistent/python")
    assert line in info.value.message and "line 2" in info.value.message
    assert info.value.detail["reason"] == "bad_requirement" and info.value.detail["line"] == line


def test_vendored_six(six_vendored: tuple[Bundle, Bundle]) -> None:
    src, out = six_vendored
    assert ".deps/six.py" in out.files
    assert any(f.startswith(".deps/six-1.16.0.dist-info/") for f in out.files)
    assert set(src.files) <= set(out.files)
    assert not [f for f in out.files if "__pycache__" in f or f.endswith(".pyc") or f.startswith(".deps/bin/")]
    assert out.sha256 != src.sha256 and out.has_requirements
    again = validate_and_repack(out.data, "main.handler", LIMITS)
    assert again.sha256 == out.sha256  # already clean: repacking changes nothing
    with zipfile.ZipFile(io.BytesIO(out.data)) as zf:
        assert {i.external_attr >> 16 for i in zf.infolist()} == {0o100644}
        assert zf.read("main.py").decode() == HANDLER_SRC


def test_vendoring_is_deterministic(six_vendored: tuple[Bundle, Bundle]) -> None:
    src, out = six_vendored
    assert vendor_requirements(src, "main.handler", LIMITS).sha256 == out.sha256


def test_unresolvable_requirement_is_named() -> None:
    require_index()
    bundle = make_bundle("six==1.16.0\nthis-package-does-not-exist-cloudfn==9.9\n")
    with pytest.raises(InvalidBundle) as info:
        vendor_requirements(bundle, "main.handler", LIMITS)
    assert "this-package-does-not-exist-cloudfn==9.9" in info.value.message
    assert info.value.detail["reason"] == "requirement_unresolvable"
    assert info.value.detail["requirement"] == "this-package-does-not-exist-cloudfn==9.9"
    assert "No matching distribution" in str(info.value.detail["pip_output"])


def test_caps_apply_to_the_vendored_bundle() -> None:
    require_index()
    bundle = make_bundle("six==1.16.0\n")
    tight = BundleLimits(max_unpacked_bytes=bundle.unpacked_bytes + 1000)
    with pytest.raises(BundleTooLarge, match="unpacked size cap"):
        vendor_requirements(bundle, "main.handler", tight)


def test_existing_deps_dir_with_requirements_rejected() -> None:
    bundle = make_bundle("six==1.16.0\n", {".deps/six.py": "x = 1\n"})
    with pytest.raises(InvalidBundle) as info:
        vendor_requirements(bundle, "main.handler", LIMITS, python="/nonexistent/python")
    assert info.value.detail["reason"] == "deps_dir_taken"


def test_timeout_kills_pip(tmp_path: Path) -> None:
    fake = tmp_path / "slowpython"
    fake.write_text("#!/bin/sh\nsleep 30 &\nwait\n")
    fake.chmod(0o755)
    with pytest.raises(InvalidBundle) as info:
        vendor_requirements(make_bundle("six\n"), "main.handler", LIMITS, python=str(fake), timeout_s=0.5)
    assert info.value.detail["reason"] == "requirements_timeout"


def test_pip_gets_a_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dump = tmp_path / "env.txt"
    fake = tmp_path / "fakepython"
    fake.write_text(f"#!/bin/sh\nenv > {dump}\necho $@ >> {dump}\n"
                    "echo 'ERROR: No matching distribution found for six==0.0.1'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CLOUDFN_DATABASE_URL", "postgresql://secret")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    with pytest.raises(InvalidBundle) as info:
        vendor_requirements(make_bundle("six==0.0.1\n"), "main.handler", LIMITS, python=str(fake))
    assert info.value.detail["requirement"] == "six==0.0.1" and "'six==0.0.1'" in info.value.message
    seen = dump.read_text()
    assert "secret" not in seen and "CLOUDFN_" not in seen and "RAY_" not in seen
    assert "PIP_INDEX_URL=https://mirror.example/simple" in seen and "HTTPS_PROXY=" in seen
    assert f"HOME={os.environ['HOME']}" in seen  # the user's pip.conf still applies
    args = seen.splitlines()[-1]
    assert "--only-binary=:all:" in args and "--no-compile" in args and "--target" in args
