"""The CLI, which sends every request through the SDK, run in-process against the live API: the outputs
the contract and the checks read, and one-line failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from serve_app.cli.main import app
from tests.conftest import ROOT


@pytest.fixture()
def cli(api_server: Any, admin_key: str, tmp_path: Path) -> Any:
    runner = CliRunner()
    env = {"CLOUDFN_API_URL": api_server.url, "CLOUDFN_API_KEY": admin_key, "CLOUDFN_HOME": str(tmp_path)}

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, list(args), env=env)
        assert (result.exit_code == 0) == ok, (args, result.exit_code, result.stdout, result.stderr)
        return result

    return run


def test_cli_spine_through_the_sdk(cli: Any) -> None:
    out = cli("deploy", str(ROOT / "examples" / "hello"), "--name", "cli-hello", "--timeout", "9").stdout
    assert out.startswith("deployed cli-hello version ") and "(active, sha256 " in out
    rec = json.loads(cli("invoke", "cli-hello", "--input", '{"name": "Ada"}', "--wait").stdout)
    assert rec["status"] == "succeeded" and rec["output"]["greeting"] == "Hello, Ada!"
    assert list(rec)[:4] == ["task_id", "function", "version", "status"]  # the API's own field order
    tid = cli("invoke", "cli-hello", "--input", '{"name": "Bo"}').stdout.strip()
    assert json.loads(cli("task", tid).stdout)["task_id"] == tid
    fns = json.loads(cli("functions", "--json").stdout)
    mine = next(f for f in fns if f["name"] == "cli-hello")
    assert mine["config"]["timeout_s"] == 9 and mine["updated_at"].endswith("+00:00")
    assert "cli-hello" in cli("functions").stdout
    assert "1" in cli("versions", "cli-hello").stdout
    assert cli("deactivate", "cli-hello").stdout.strip() == "cli-hello: inactive"
    bad = cli("invoke", "cli-hello", "--wait", ok=False)
    assert bad.stderr.startswith("cloudfn: HTTP 409: ") and len(bad.stderr.strip().splitlines()) == 1
    assert cli("activate", "cli-hello").stdout.strip() == "cli-hello: active"
    cli("deploy", str(ROOT / "examples" / "hello"), "--name", "cli-hello")
    assert cli("rollback", "cli-hello").stdout.strip() == "cli-hello: active version 1"
    rec = json.loads(cli("invoke", "cli-hello", "--input", '{"name": "Cy"}', "--wait").stdout)
    assert "greeting Cy" in cli("logs", rec["task_id"]).stdout
    assert json.loads(cli("metrics", "cli-hello", "--json").stdout)["count"] >= 2
    assert "duration p50" in cli("metrics", "cli-hello").stdout
    assert cli("delete", "cli-hello").stdout.strip() == "cli-hello: deleted"
    missing = cli("task", "no-such-task", ok=False)
    assert missing.stderr.startswith("cloudfn: HTTP 404: ") and "no-such-task" in missing.stderr
    assert "JSON" in cli("invoke", "cli-hello", "--input", "{oops", ok=False).stderr
    assert "does not exist" in cli("deploy", "/nonexistent", "--name", "x", ok=False).stderr


def test_cli_pipelines_rules_and_lists_through_the_sdk(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "add1").mkdir()
    (tmp_path / "add1" / "main.py").write_text("def handler(e, c):\n    return {'x': e['x'] + 1}\n")
    cli("deploy", str(tmp_path / "add1"), "--name", "cli-add1")
    made = json.loads(cli("pipeline", "create", "cli-p", "cli-add1", "cli-add1@1").stdout)
    assert [(s["function"], s.get("version")) for s in made["steps"]] == [("cli-add1", None), ("cli-add1", 1)]
    assert json.loads(cli("pipeline", "show", "cli-p").stdout)["name"] == "cli-p"
    run = json.loads(cli("pipeline", "invoke", "cli-p", "--input", '{"x": 1}', "--wait").stdout)
    assert run["status"] == "succeeded" and run["output"] == {"x": 3} and len(run["steps"]) == 2
    rule = {"name": "cli-rule", "function": "cli-add1", "kind": "anomaly",
            "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s"}]}
    made_rule = json.loads(cli("rules", "create", json.dumps(rule)).stdout)
    assert made_rule["name"] == "cli-rule" and made_rule["channels"][0]["secret"] == "***"
    assert made_rule["id"] in [r["id"] for r in json.loads(cli("rules", "list").stdout)]
    assert cli("rules", "delete", str(made_rule["id"])).stdout.strip() == f"rule {made_rule['id']}: deleted"
    assert "HTTP 400" in cli("rules", "create", "[1]", ok=False).stderr
    assert isinstance(json.loads(cli("anomalies", "--json").stdout), list)
    assert isinstance(json.loads(cli("alerts", "--json").stdout), list)
    assert isinstance(json.loads(cli("dead-letters", "--json").stdout), list)
