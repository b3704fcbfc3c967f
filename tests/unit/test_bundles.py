"""core.bundles: every ZIP hazard rejected with its reason, clean repacking, safe unpacking, the store."""

from __future__ import annotations

import io
import os
import stat
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from core.bundles import Bundle, BundleLimits, BundleStore, unpack, validate_and_repack, zip_folder
from core.errors import BundleTooLarge, InvalidBundle, InvalidInput, NotFound
from core.settings import Settings
from tests.unit.zip_hazards import (
    HANDLER_SOURCE,
    PNG_HEADER,
    SHELL_SCRIPT,
    Central,
    Member,
    bundle,
    craft,
    deflate,
    streamed_zip,
    with_main,
    zip64_zip,
    zip_of,
)

LIMITS = BundleLimits()
MiB = 2**20


def _zipfile_with(method: int) -> bytes:
    return zip_of({"main.py": HANDLER_SOURCE}, compression=method)


def _fifield_bomb() -> bytes:
    """Two central records sharing one local entry's data (the overlapping-entry bomb)."""
    kernel = Member("main.py", HANDLER_SOURCE)
    return craft([kernel], central=[Central(0), Central(0, name=b"b.py")])


def _partial_overlap() -> bytes:
    """The first entry's compressed size reaches into the second entry."""
    members = with_main(Member("b.py", b"x = 1\n"))
    first = len(deflate(HANDLER_SOURCE))
    return craft(members, central=[Central(0, compress_size=first + 40), Central(1)])


# (id, archive, handler, limits, error class, reason, words the message must contain)
Hazard = tuple[str, Callable[[], bytes], str, BundleLimits, type[Exception], str, tuple[str, ...]]
HAZARDS: list[Hazard] = [
    ("not-zip", lambda: b"hello, world\n" * 10, "main.handler", LIMITS, InvalidBundle, "not_zip", ("not a ZIP",)),
    ("empty-input", lambda: b"", "main.handler", LIMITS, InvalidBundle, "not_zip", ("not a ZIP", "empty")),
    ("empty-zip", lambda: zip_of({}), "main.handler", LIMITS, InvalidBundle, "empty", ("empty ZIP",)),
    ("png-polyglot", lambda: PNG_HEADER + bundle(), "main.handler", LIMITS, InvalidBundle, "polyglot",
     ("polyglot", "before the first")),
    ("script-polyglot", lambda: SHELL_SCRIPT + bundle(), "main.handler", LIMITS, InvalidBundle, "polyglot",
     ("polyglot",)),
    ("polyglot-offsets-adjusted", lambda: craft(with_main(), prefix=SHELL_SCRIPT, prefix_in_offsets=True),
     "main.handler", LIMITS, InvalidBundle, "polyglot", ("polyglot",)),
    ("trailing-data", lambda: bundle() + PNG_HEADER, "main.handler", LIMITS, InvalidBundle, "trailing_data",
     ("after the end",)),
    ("eocd-in-comment", lambda: craft(with_main(), comment=b"PK\x05\x06" + b"\x00" * 18),
     "main.handler", LIMITS, InvalidBundle, "ambiguous_end", ("ambiguous",)),
    ("zip-too-large", lambda: bundle(), "main.handler", BundleLimits(max_zip_bytes=100), BundleTooLarge,
     "zip_too_large", ("over the limit of 100",)),
    ("unpacked-too-large", lambda: bundle(**{"data.txt": "x" * 5000}), "main.handler",
     BundleLimits(max_unpacked_bytes=4096), BundleTooLarge, "unpacked_too_large", ("4096", "data.txt")),
    ("too-many-entries", lambda: bundle(**{"a.py": "", "b.py": ""}), "main.handler",
     BundleLimits(max_entries=2), BundleTooLarge, "too_many_entries", ("3 entries", "limit of 2")),
    ("ratio-bomb", lambda: bundle(**{"zeros.bin": b"\x00" * (2 * MiB)}), "main.handler", LIMITS,
     InvalidBundle, "ratio", ("ratio", "zeros.bin")),
    ("overlap-shared-data", _fifield_bomb, "main.handler", LIMITS, InvalidBundle, "overlap",
     ("overlap", "b.py")),
    ("overlap-partial", _partial_overlap, "main.handler", LIMITS, InvalidBundle, "overlap", ("overlap", "b.py")),
    ("hidden-gap", lambda: craft(with_main(Member("b.py", b"")), gap=b"#!/bin/sh\nrm -rf /\n"),
     "main.handler", LIMITS, InvalidBundle, "hidden_data", ("unaccounted", "b.py")),
    ("size-exceeds-declared", lambda: craft(with_main(Member("big.txt", b"A" * 100_000, declared_size=1000))),
     "main.handler", LIMITS, InvalidBundle, "size_exceeded", ("more than its declared 1000", "big.txt")),
    ("size-short-of-declared", lambda: craft(with_main(Member("s.txt", b"A" * 100, declared_size=1000))),
     "main.handler", LIMITS, InvalidBundle, "size_mismatch", ("s.txt", "declares 1000")),
    ("stored-sizes-disagree", lambda: craft(with_main(Member("s.txt", b"A" * 100, method=0, declared_size=50))),
     "main.handler", LIMITS, InvalidBundle, "size_mismatch", ("s.txt",)),
    ("crc-mismatch", lambda: craft(with_main(Member("c.py", b"x = 1\n", crc=1234))), "main.handler", LIMITS,
     InvalidBundle, "crc_mismatch", ("CRC", "c.py")),
    ("corrupt-deflate", lambda: craft(with_main(Member("c.py", b"x" * 10, payload=b"\xff" * 8))),
     "main.handler", LIMITS, InvalidBundle, "corrupt", ("c.py",)),
    ("header-name-mismatch", lambda: craft(with_main(Member("ok.py")), central=[Central(0), Central(1, b"ko.py")]),
     "main.handler", LIMITS, InvalidBundle, "header_mismatch", ("ok.py", "ko.py")),
    ("dotdot", lambda: bundle(**{"../evil.py": ""}), "main.handler", LIMITS, InvalidBundle, "path_traversal",
     ("traversal", "../evil.py")),
    ("dotdot-inner", lambda: bundle(**{"pkg/../../evil.py": ""}), "main.handler", LIMITS, InvalidBundle,
     "path_traversal", ("traversal",)),
    ("absolute", lambda: craft(with_main(Member("/etc/evil.py"))), "main.handler", LIMITS, InvalidBundle,
     "absolute_path", ("absolute", "/etc/evil.py")),
    ("backslash", lambda: bundle(**{"..\\..\\evil.py": ""}), "main.handler", LIMITS, InvalidBundle, "backslash",
     ("backslash", "evil.py")),
    ("drive-letter", lambda: bundle(**{"C:/evil.py": ""}), "main.handler", LIMITS, InvalidBundle,
     "drive_letter", ("drive letter", "C:/evil.py")),
    ("drive-relative", lambda: bundle(**{"C:evil.py": ""}), "main.handler", LIMITS, InvalidBundle,
     "drive_letter", ("drive letter",)),
    ("colon-stream", lambda: bundle(**{"main.py:stream": ""}), "main.handler", LIMITS, InvalidBundle, "colon",
     ("':'",)),
    ("nul", lambda: craft(with_main(Member(b"evil.py\x00.txt"))), "main.handler", LIMITS, InvalidBundle,
     "nul_in_name", ("NUL", "evil.py")),
    ("control-char", lambda: bundle(**{"a\nb.py": ""}), "main.handler", LIMITS, InvalidBundle,
     "control_in_name", ("control",)),
    ("rtl-override", lambda: bundle(**{"evil\u202eyp.txt": ""}), "main.handler", LIMITS, InvalidBundle,
     "control_in_name", ("invisible",)),
    ("non-utf8-unflagged", lambda: craft(with_main(Member(b"caf\xe9.py"))), "main.handler", LIMITS,
     InvalidBundle, "non_utf8_name", ("not ASCII or UTF-8", "caf")),
    ("non-utf8-flagged", lambda: craft(with_main(Member(b"caf\xe9.py", flags=0x800))), "main.handler", LIMITS,
     InvalidBundle, "non_utf8_name", ("flagged UTF-8",)),
    ("name-too-long", lambda: bundle(**{"n" * 1025: ""}), "main.handler", LIMITS, InvalidBundle,
     "name_too_long", ("1025 bytes", "limit of 1024")),
    ("too-deep", lambda: bundle(**{"d/" * 32 + "f.py": ""}), "main.handler", LIMITS, InvalidBundle, "too_deep",
     ("33 levels", "limit of 32")),
    ("empty-component", lambda: bundle(**{"pkg//x.py": ""}), "main.handler", LIMITS, InvalidBundle,
     "bad_component", ("pkg//x.py",)),
    ("duplicate", lambda: craft(with_main(Member("main.py", b"print(1)\n"))), "main.handler", LIMITS,
     InvalidBundle, "duplicate", ("duplicate", "main.py")),
    ("case-collision", lambda: bundle(**{"A.py": "", "a.py": ""}), "main.handler", LIMITS, InvalidBundle,
     "case_collision", ("'A.py'", "'a.py'", "case")),
    ("case-collision-dirs", lambda: bundle(**{"Pkg/x.py": "", "pkg/y.py": ""}), "main.handler", LIMITS,
     InvalidBundle, "case_collision", ("Pkg", "pkg")),
    ("unicode-normalisation-collision", lambda: bundle(**{"caf\u00e9.py": "", "cafe\u0301.py": ""}),
     "main.handler", LIMITS, InvalidBundle, "case_collision", ("normalisation",)),
    ("file-and-dir", lambda: bundle(**{"lib": "", "lib/x.py": ""}), "main.handler", LIMITS, InvalidBundle,
     "file_dir_clash", ("both a file and a directory", "lib")),
    ("symlink", lambda: craft(with_main(Member("link.py", b"/etc/passwd", mode=0o120777))), "main.handler",
     LIMITS, InvalidBundle, "special_file", ("symbolic link", "link.py")),
    ("char-device", lambda: craft(with_main(Member("dev", mode=0o020644))), "main.handler", LIMITS,
     InvalidBundle, "special_file", ("character device", "dev")),
    ("block-device", lambda: craft(with_main(Member("blk", mode=0o060644))), "main.handler", LIMITS,
     InvalidBundle, "special_file", ("block device",)),
    ("fifo", lambda: craft(with_main(Member("pipe", mode=0o010644))), "main.handler", LIMITS, InvalidBundle,
     "special_file", ("FIFO", "pipe")),
    ("socket", lambda: craft(with_main(Member("sock", mode=0o140644))), "main.handler", LIMITS, InvalidBundle,
     "special_file", ("socket",)),
    ("dir-mode-on-file", lambda: craft(with_main(Member("notdir", mode=0o040755))), "main.handler", LIMITS,
     InvalidBundle, "special_file", ("directory mode",)),
    ("setuid", lambda: craft(with_main(Member("run.sh", b"#!/bin/sh\n", mode=0o104755))), "main.handler",
     LIMITS, InvalidBundle, "special_mode", ("setuid", "run.sh")),
    ("setgid", lambda: craft(with_main(Member("run.sh", b"#!/bin/sh\n", mode=0o102755))), "main.handler",
     LIMITS, InvalidBundle, "special_mode", ("setgid",)),
    ("sticky-dir", lambda: craft(with_main(Member("tmp/", mode=0o041777))), "main.handler", LIMITS,
     InvalidBundle, "special_mode", ("sticky", "tmp/")),
    ("encrypted", lambda: craft(with_main(Member("secret.py", b"x = 1\n", flags=0x1))), "main.handler", LIMITS,
     InvalidBundle, "encrypted", ("encrypted", "secret.py")),
    ("aes-encrypted", lambda: craft(with_main(Member("secret.py", b"x", method=99, payload=b"?"))),
     "main.handler", LIMITS, InvalidBundle, "encrypted", ("encrypted",)),
    ("bzip2", lambda: _zipfile_with(zipfile.ZIP_BZIP2), "main.handler", LIMITS, InvalidBundle,
     "unsupported_method", ("method 12", "bzip2", "main.py")),
    ("lzma", lambda: _zipfile_with(zipfile.ZIP_LZMA), "main.handler", LIMITS, InvalidBundle,
     "unsupported_method", ("method 14", "lzma")),
    ("only-directories", lambda: zip_of({"a/": "", "a/b/": ""}), "main.handler", LIMITS, InvalidBundle,
     "no_files", ("only directories",)),
    ("handler-missing", lambda: zip_of({"app.py": "", "util.py": "", "README.md": ""}), "main.handler", LIMITS,
     InvalidBundle, "handler_missing", ("main.py", "app.py, util.py")),
    ("handler-missing-none", lambda: zip_of({"README.md": ""}), "main.handler", LIMITS, InvalidBundle,
     "handler_missing", ("main.py", "found: none")),
    ("nested-handler-missing", lambda: bundle(**{"pkg/other.py": ""}), "pkg/mod.func", LIMITS, InvalidBundle,
     "handler_missing", ("pkg/mod.py", "main.py")),
    ("folder-zipped-with-its-folder", lambda: zip_of({"myfn/main.py": HANDLER_SOURCE}), "main.handler", LIMITS,
     InvalidBundle, "handler_missing", ("main.py", "myfn/main.py", "folder's contents")),
]


@pytest.mark.parametrize(("archive", "handler", "limits", "error", "reason", "words"),
                         [h[1:] for h in HAZARDS], ids=[h[0] for h in HAZARDS])
def test_hazard_is_rejected(archive: Callable[[], bytes], handler: str, limits: BundleLimits,
                            error: type[Exception], reason: str, words: tuple[str, ...]) -> None:
    with pytest.raises(InvalidBundle) as caught:
        validate_and_repack(archive(), handler, limits)
    assert type(caught.value) is error
    assert caught.value.detail["reason"] == reason
    for word in words:
        assert word in caught.value.message


def test_overlap_bomb_is_accepted_by_cpython_zipfile() -> None:
    """Why the check is ours: this Python's zipfile reads both overlapping entries without complaint."""
    with zipfile.ZipFile(io.BytesIO(_partial_overlap())) as z:
        assert z.read("main.py") == HANDLER_SOURCE
        assert z.read("b.py") == b"x = 1\n"


@pytest.mark.parametrize("handler", ["main", "main.", ".handler", "main.handler;rm -rf", "1main.handler", ""])
def test_unparsable_handler_is_invalid_input(handler: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_and_repack(bundle(), handler, LIMITS)
    assert type(caught.value) is InvalidInput
    assert "module.function" in caught.value.message


def test_handler_is_checked_before_the_archive() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_and_repack(b"not a zip", "nope", LIMITS)
    assert type(caught.value) is InvalidInput


# Accepted archives


def _entries(data: bytes) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        return z.infolist()


def test_normal_bundle() -> None:
    src = zip_of({"main.py": HANDLER_SOURCE, "lib/": "", "lib/util.py": "X = 1\n", "data/x.json": "{}"})
    b = validate_and_repack(src, "main.handler", LIMITS)
    assert isinstance(b, Bundle)
    assert b.files == ("data/x.json", "lib/util.py", "main.py")
    assert b.unpacked_bytes == len(HANDLER_SOURCE) + len("X = 1\n") + 2
    assert not b.has_requirements
    with zipfile.ZipFile(io.BytesIO(b.data)) as z:
        assert z.read("main.py") == HANDLER_SOURCE
        assert z.read("lib/util.py") == b"X = 1\n"


@pytest.mark.parametrize("handler", ["pkg/mod.func", "pkg.mod.func"])
def test_nested_handler(handler: str) -> None:
    b = validate_and_repack(zip_of({"pkg/__init__.py": "", "pkg/mod.py": "def func(e): return e\n"}), handler,
                            LIMITS)
    assert "pkg/mod.py" in b.files


def test_default_handler_constant_resolves() -> None:
    from core.models import DEFAULT_HANDLER

    assert validate_and_repack(bundle(), DEFAULT_HANDLER, LIMITS).files == ("main.py",)


@pytest.mark.parametrize(("extra", "expected"), [({"requirements.txt": "requests==2.32.3\n"}, True),
                                                 ({"sub/requirements.txt": ""}, False), ({}, False)])
def test_requirements_detection(extra: dict[str, str], expected: bool) -> None:
    assert validate_and_repack(bundle(**extra), "main.handler", LIMITS).has_requirements is expected


def _zip_infos(order: list[str], files: dict[str, bytes], *, date: tuple[int, ...], mode: int,
               method: int, comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.comment = comment
        for name in order:
            info = zipfile.ZipInfo(name, date)  # type: ignore[arg-type]
            info.external_attr = mode << 16
            info.compress_type = method
            info.extra = b"\x75\x78\x0b\x00\x01\x04\xe8\x03\x00\x00\x04\xe8\x03\x00\x00" if comment else b""
            info.comment = comment
            z.writestr(info, files[name])
    return buf.getvalue()


def test_repack_is_deterministic() -> None:
    files = {"main.py": HANDLER_SOURCE, "b/c.py": b"C = 3\n", "a.txt": b"a" * 1000}
    one = _zip_infos(["main.py", "b/c.py", "a.txt"], files, date=(2024, 5, 17, 13, 1, 2), mode=0o100755,
                     method=zipfile.ZIP_STORED)
    two = _zip_infos(["a.txt", "main.py", "b/c.py"], files, date=(1999, 1, 1, 0, 0, 0), mode=0o100600,
                     method=zipfile.ZIP_DEFLATED, comment=b"made by a tool")
    assert one != two
    b1, b2 = (validate_and_repack(d, "main.handler", LIMITS) for d in (one, two))
    assert b1.sha256 == b2.sha256
    assert b1.data == b2.data
    again = validate_and_repack(b1.data, "main.handler", LIMITS)
    assert again.data == b1.data


def test_repack_normalises_entries() -> None:
    src = _zip_infos(["z.py", "main.py", "a/b.py"], {"z.py": b"", "main.py": HANDLER_SOURCE, "a/b.py": b""},
                     date=(2030, 12, 31, 23, 59, 58), mode=0o100777, method=zipfile.ZIP_STORED, comment=b"hi")
    b = validate_and_repack(src, "main.handler", LIMITS)
    with zipfile.ZipFile(io.BytesIO(b.data)) as z:
        assert z.comment == b""
        infos = z.infolist()
    assert [i.filename for i in infos] == ["a/b.py", "main.py", "z.py"]  # sorted
    for info in infos:
        assert info.external_attr >> 16 == 0o100644
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.extra == b""
        assert info.comment == b""
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.create_system == 3
    assert b.data.startswith(b"PK\x03\x04")


def test_unflagged_utf8_names_are_accepted_and_flagged_on_repack() -> None:
    b = validate_and_repack(craft(with_main(Member("caf\u00e9.py".encode(), b"x", flags=0))), "main.handler",
                            LIMITS)
    assert "caf\u00e9.py" in b.files
    assert {i.filename: i.flag_bits & 0x800 for i in _entries(b.data)}["caf\u00e9.py"]


def test_data_descriptors_and_zip64_are_accepted() -> None:
    files = {"main.py": HANDLER_SOURCE, "x.py": b"X = 1\n"}
    plain = validate_and_repack(zip_of(files), "main.handler", LIMITS)
    for data in (streamed_zip(files), zip64_zip(files)):
        assert data != zip_of(files)
        assert validate_and_repack(data, "main.handler", LIMITS).sha256 == plain.sha256


def test_zip64_extra_fields_in_the_central_directory_are_read() -> None:
    members = with_main(Member("x.py", b"X = 1\n"))
    data = craft(members, central=[Central(0, zip64=True), Central(1, zip64=True)])
    assert validate_and_repack(data, "main.handler", LIMITS).sha256 == validate_and_repack(
        craft(members), "main.handler", LIMITS).sha256


def test_handler_module_may_be_a_package() -> None:
    """As Lambda imports it: `pkg.func` resolves to pkg.py or pkg/__init__.py."""
    assert validate_and_repack(zip_of({"pkg/__init__.py": "def func(e): pass\n"}), "pkg.func", LIMITS).files


def test_small_repetitive_files_are_not_ratio_bombs() -> None:
    b = validate_and_repack(bundle(**{"blank.txt": b" " * (MiB - 1)}), "main.handler", LIMITS)
    assert b.unpacked_bytes == MiB - 1 + len(HANDLER_SOURCE)


def test_limits_from_settings() -> None:
    s = Settings(max_zip_bytes=10, max_unpacked_bytes=20, max_zip_entries=3)
    assert BundleLimits.from_settings(s) == BundleLimits(max_zip_bytes=10, max_unpacked_bytes=20, max_entries=3)


# zip_folder


def _make_folder(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "main.py").write_bytes(HANDLER_SOURCE)
    (root / "pkg" / "mod.py").write_text("def func(e): return e\n")
    (root / "requirements.txt").write_text("")
    for junk in ("__pycache__", ".git", "pkg/__pycache__"):
        (root / junk).mkdir()
        (root / junk / "junk").write_text("x")
    (root / "stale.pyc").write_bytes(b"\x00")
    return root


def test_zip_folder_is_deterministic_and_skips_junk(tmp_path: Path) -> None:
    folder = _make_folder(tmp_path / "fn")
    first = zip_folder(folder)
    os.utime(folder / "main.py", (0, 1_700_000_000))
    (folder / "pkg" / "mod.py").chmod(0o755)
    assert zip_folder(folder) == first
    assert [i.filename for i in _entries(first)] == ["main.py", "pkg/mod.py", "requirements.txt"]
    b = validate_and_repack(first, "pkg/mod.func", LIMITS)
    assert b.data == first  # zip_folder already writes the clean form
    assert b.has_requirements


def test_zip_folder_refuses_symlinks(tmp_path: Path) -> None:
    folder = _make_folder(tmp_path / "fn")
    (folder / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(InvalidBundle, match="symbolic link"):
        zip_folder(folder)


def test_zip_folder_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a folder"):
        zip_folder(tmp_path / "missing")


# unpack


def test_unpack_writes_regular_files_0644(tmp_path: Path) -> None:
    src = _zip_infos(["main.py", "pkg/mod.py"], {"main.py": HANDLER_SOURCE, "pkg/mod.py": b"M = 1\n"},
                     date=(2020, 1, 1, 0, 0, 0), mode=0o100777, method=zipfile.ZIP_DEFLATED)
    b = validate_and_repack(src, "main.handler", LIMITS)
    zpath = tmp_path / "b.zip"
    zpath.write_bytes(b.data)
    for source, dest in ((b.data, tmp_path / "from-bytes"), (zpath, tmp_path / "from-path")):
        unpack(source, dest)
        assert (dest / "main.py").read_bytes() == HANDLER_SOURCE
        assert (dest / "pkg" / "mod.py").read_bytes() == b"M = 1\n"
        for f in ("main.py", "pkg/mod.py"):
            assert stat.S_IMODE((dest / f).stat().st_mode) == 0o644


def test_unpack_never_overwrites_or_follows_symlinks(tmp_path: Path) -> None:
    b = validate_and_repack(zip_of({"main.py": HANDLER_SOURCE, "pkg/mod.py": "x"}), "main.handler", LIMITS)
    dest = tmp_path / "dest"
    unpack(b.data, dest)
    with pytest.raises(InvalidBundle, match="already exists"):
        unpack(b.data, dest)
    outside = tmp_path / "outside"
    outside.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "pkg").symlink_to(outside)
    with pytest.raises(InvalidBundle, match="not a folder"):
        unpack(b.data, other)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("name", ["../evil.py", "..\\evil.py", "/tmp/evil.py"])
def test_unpack_rechecks_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidBundle):
        unpack(craft(with_main(Member(name, b"x"))), tmp_path / "d")
    assert not (tmp_path / "evil.py").exists()


def test_unpack_rechecks_declared_sizes(tmp_path: Path) -> None:
    with pytest.raises(InvalidBundle, match="more than its declared"):
        unpack(craft(with_main(Member("big", b"A" * 100_000, declared_size=10))), tmp_path / "d")


# BundleStore


def _bundle() -> Bundle:
    return validate_and_repack(bundle(), "main.handler", LIMITS)


def test_store_round_trip(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "artifacts")
    b = _bundle()
    path = store.put(b)
    assert path == store.path(b.sha256) == tmp_path / "artifacts" / b.sha256[:2] / f"{b.sha256}.zip"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert store.read(b.sha256) == b.data
    store.delete(b.sha256)
    assert not path.exists()
    store.delete(b.sha256)  # idempotent
    with pytest.raises(NotFound):
        store.read(b.sha256)


def test_store_put_is_idempotent_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = BundleStore(tmp_path)
    b = _bundle()
    path = store.put(b)
    inode = path.stat().st_ino
    assert store.put(b) == path
    assert path.stat().st_ino == inode  # not rewritten
    threads = [threading.Thread(target=store.put, args=(b,)) for _ in range(8)]
    path.unlink()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_bytes() == b.data
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_store_repairs_a_corrupt_copy(tmp_path: Path) -> None:
    store = BundleStore(tmp_path)
    b = _bundle()
    path = store.path(b.sha256)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    store.put(b)
    assert path.read_bytes() == b.data


def test_store_rejects_bad_hashes_and_inconsistent_bundles(tmp_path: Path) -> None:
    store = BundleStore(tmp_path)
    for bad in ("../../etc/passwd", "A" * 64, "abc"):
        with pytest.raises(InvalidInput):
            store.path(bad)
    b = _bundle()
    with pytest.raises(ValueError):
        store.put(Bundle(data=b.data + b"x", sha256=b.sha256, files=b.files, unpacked_bytes=0,
                         has_requirements=False))
