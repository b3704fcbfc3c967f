"""The `runtime` config field and Node.js handler strings and bundles: accepted forms, and refusals that name
what is allowed (a 4xx at the API)."""

from __future__ import annotations

import pytest

from core.bundles import BundleLimits, validate_and_repack
from core.errors import InvalidBundle, InvalidInput
from core.models import FunctionConfig, node_handler_path
from serve_app.control.functions import parse_config, parse_handler
from tests.unit.zip_hazards import zip_of

LIMITS = BundleLimits()
INDEX = "exports.handler = async () => 1;\n"


def test_runtime_defaults_to_python_and_accepts_nodejs20() -> None:
    assert FunctionConfig().runtime == "python3.11"
    assert parse_config('{"runtime": "nodejs20", "memory_mb": 256}').runtime == "nodejs20"


@pytest.mark.parametrize("value", ['"nodejs18"', '"python3.12"', '"node"', "20", "null"])
def test_unknown_runtime_is_refused_naming_the_allowed_ones(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_config(f'{{"runtime": {value}}}')
    message = caught.value.message
    assert message.startswith("config.runtime:") and "'python3.11'" in message and "'nodejs20'" in message


def test_default_handler_follows_the_runtime() -> None:
    assert parse_handler(None) == "main.handler"
    assert parse_handler(None, "nodejs20") == "index.handler"
    assert parse_handler(" src/app.handler ", "nodejs20") == "src/app.handler"


@pytest.mark.parametrize(("handler", "expected"), [
    ("index.handler", ("index", "handler")),
    ("src/app.handlers.main", ("src/app", "handlers.main")),
    ("my-fn.run", ("my-fn", "run")),
    ("lib/v2/index.$handler", ("lib/v2/index", "$handler")),
])
def test_node_handler_strings_split_like_lambda(handler: str, expected: tuple[str, str]) -> None:
    assert node_handler_path(handler) == expected


@pytest.mark.parametrize("handler", ["index", "index.", ".handler", "../up.handler", "/abs.handler", "a/../b.h",
                                     "index.handler;rm", "index.1x", ""])
def test_bad_node_handler_strings_are_invalid_input(handler: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_handler(handler or "   ", "nodejs20")
    assert "file.export" in caught.value.message


@pytest.mark.parametrize(("files", "handler"), [
    ({"index.js": INDEX}, "index.handler"),
    ({"index.mjs": "export const handler = async () => 1;\n"}, "index.handler"),
    ({"index.cjs": INDEX}, "index.handler"),
    ({"src/app.js": INDEX, "node_modules/dep/index.js": "module.exports = 1;\n"}, "src/app.handler"),
])
def test_node_bundle_with_its_handler_file_is_accepted(files: dict[str, str], handler: str) -> None:
    bundle = validate_and_repack(zip_of(files), handler, LIMITS, "nodejs20")
    assert set(bundle.files) == set(files)


def test_node_bundle_without_its_handler_file_names_what_it_looked_for() -> None:
    with pytest.raises(InvalidBundle) as caught:
        validate_and_repack(zip_of({"fn/index.js": INDEX, "main.py": "x = 1\n"}), "index.handler", LIMITS, "nodejs20")
    assert caught.value.detail["reason"] == "handler_missing"
    message = caught.value.message
    assert "index.js (or .mjs, .cjs)" in message and "found fn/index.js" in message


def test_python_bundle_rules_are_unchanged_by_the_runtime_argument() -> None:
    with pytest.raises(InvalidBundle):
        validate_and_repack(zip_of({"index.js": INDEX}), "main.handler", LIMITS)
    assert validate_and_repack(zip_of({"main.py": "def handler(e, c):\n    return 1\n"}), "main.handler",
                               LIMITS).files == ("main.py",)


async def test_gate_refuses_node_functions_only_when_node_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from core.errors import SandboxUnavailableError
    from serve_app.accept.sandbox_gate import SandboxGate

    gate = SandboxGate()
    gate.node_problem = "Node.js is not installed"
    gate._probed_at = time.monotonic()  # probed just now: no re-probe
    await gate.require()  # Python functions are unaffected
    await gate.require(runtime="python3.11", network=False)
    with pytest.raises(SandboxUnavailableError) as caught:
        await gate.require(runtime="nodejs20")
    assert "Node.js functions cannot run on this host: Node.js is not installed" in caught.value.message
    gate.node_problem = None
    await gate.require(runtime="nodejs20")
