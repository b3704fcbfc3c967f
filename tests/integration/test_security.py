"""Secure deployment over the API: hostile ZIPs rejected with a 4xx, secrets encrypted at rest and only
visible to their function, versions immutable with rollback, artifacts freed on delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from core.bundles import BundleLimits
from tests.conftest import deploy
from tests.unit.test_bundles import HAZARDS

ENV_FN = "import os\ndef handler(e, c):\n    return {k: os.environ.get(k) for k in e['names']}\n"


def invoke(api: httpx.Client, name: str, event: Any) -> dict[str, Any]:
    r = api.post(f"/v1/functions/{name}/invocations", params={"wait": 60}, json=event)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_hazard_corpus_is_rejected_over_http(api: httpx.Client) -> None:
    """Every entry of the unit tests' ZIP-hazard corpus, uploaded through the API: a 4xx naming the reason."""
    cases = [h for h in HAZARDS if h[2] == "main.handler" and h[3] == BundleLimits()]
    assert len(cases) >= 40
    for label, make, _handler, _limits, _err, reason, _words in cases:
        r = api.post("/v1/functions", data={"name": "hazard"},
                     files={"archive": ("h.zip", make(), "application/zip")})
        assert 400 <= r.status_code < 500, (label, r.status_code, r.text[:200])
        body = r.json()["error"]
        assert body["message"] and body.get("reason") == reason, (label, body)
    assert "hazard" not in [f["name"] for f in api.get("/v1/functions").json()["functions"]]


def test_secrets_are_encrypted_at_rest_and_never_read_back(api: httpx.Client, database_url: str,
                                                            settings: Any) -> None:
    r = deploy(api, "secretive", files={"main.py": ENV_FN}, config={"env": {"API_TOKEN": "s3cr3t-v1"}})
    assert r.status_code == 201, r.text
    assert "s3cr3t" not in r.text and r.json()["config"]["env"] == {"API_TOKEN": "***"}
    out = invoke(api, "secretive", {"names": ["API_TOKEN", "CLOUDFN_HOME", "RAY_ADDRESS", "CLOUDFN_DATABASE_URL"]})
    assert out["output"] == {"API_TOKEN": "s3cr3t-v1", "CLOUDFN_HOME": None, "RAY_ADDRESS": None,
                             "CLOUDFN_DATABASE_URL": None}
    r = api.put("/v1/functions/secretive/env", json={"DB_PASSWORD": "hunter2-xyz"})
    assert r.status_code == 200 and r.json()["env"] == ["DB_PASSWORD"]
    assert invoke(api, "secretive", {"names": ["DB_PASSWORD"]})["output"] == {"DB_PASSWORD": "hunter2-xyz"}
    for path in ("/v1/functions/secretive", "/v1/functions", "/v1/functions/secretive/versions",
                 "/v1/functions/secretive/env"):
        body = api.get(path).text
        assert "hunter2" not in body and "s3cr3t" not in body, path
    eng = create_engine(database_url)
    with eng.connect() as c:
        dump = " ".join(str(r) for r in c.execute(text(
            "SELECT f.env_encrypted, v.config::text FROM functions f JOIN function_versions v ON v.function_id = f.id"
            " WHERE f.name = 'secretive'")).all())
    eng.dispose()
    assert "hunter2" not in dump and "s3cr3t" not in dump and "DB_PASSWORD" not in dump.split("env_names")[0]
    key = Path(settings.home) / "secrets.key"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    # another function does not see them
    assert deploy(api, "nosy", files={"main.py": ENV_FN}).status_code == 201
    assert invoke(api, "nosy", {"names": ["API_TOKEN", "DB_PASSWORD"]})["output"] == {"API_TOKEN": None,
                                                                                       "DB_PASSWORD": None}
    bad = api.put("/v1/functions/secretive/env", json={"RAY_ADDRESS": "x"})
    assert bad.status_code == 400 and "reserved" in bad.json()["error"]["message"]
    assert api.put("/v1/functions/secretive/env", content=b"[1,2]").status_code == 400


def test_versions_rollback_and_invoke_a_given_version(api: httpx.Client) -> None:
    for i in (1, 2, 3):
        assert deploy(api, "multi", files={"main.py": f"def handler(e, c):\n    return {i}\n"}).status_code == 201
    vs = api.get("/v1/functions/multi/versions").json()["versions"]
    assert [v["version"] for v in vs] == [3, 2, 1]
    assert api.post("/v1/functions/multi/invocations", params={"wait": 30, "version": 1},
                    json={}).json()["output"] == 1
    assert api.post("/v1/functions/multi/rollback", params={"version": 2}).json()["active_version"] == 2
    assert invoke(api, "multi", {})["output"] == 2
    assert api.post("/v1/functions/multi/rollback", params={"version": 9}).status_code == 404


def test_delete_frees_artifacts_nothing_else_uses(api: httpx.Client, settings: Any) -> None:
    r = deploy(api, "ephemeral", files={"main.py": "def handler(e, c):\n    return 'unique-content-77'\n"})
    sha = r.json()["sha256"]
    stored = Path(settings.home) / "artifacts" / sha[:2] / f"{sha}.zip"
    assert stored.exists()
    tid = invoke(api, "ephemeral", {})["task_id"]
    assert api.delete("/v1/functions/ephemeral").status_code == 204
    assert not stored.exists()
    assert api.get(f"/v1/tasks/{tid}").json()["output"] == "unique-content-77"
