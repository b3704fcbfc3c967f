"""`cloudfn up` starts from the Serve config: a copy of configs/serve.yaml with another HTTP port and other
deployment options, and no CLOUDFN_API_PORT, puts the API on the file's port with the file's options."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
import yaml

from bench.platform_proc import ROOT, PlatformProcess, free_port

pytestmark = pytest.mark.slow


def test_up_serves_on_the_configs_port_with_its_options(tmp_path: Path) -> None:
    port = free_port()
    config = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    config["http_options"]["port"] = port
    config["applications"][0]["deployments"][0]["max_ongoing_requests"] = 1999
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))

    plat = PlatformProcess(extra_env={"CLOUDFN_SERVE_CONFIG": str(path), "CLOUDFN_API_URL": f"http://127.0.0.1:{port}"})
    plat.env.pop("CLOUDFN_API_PORT")
    plat.url = f"http://127.0.0.1:{port}"
    with plat:
        log = plat.log.read_text()
        assert f"127.0.0.1:{port}, replicas 1, max_ongoing_requests 1999 (from {path})" in log
        with plat.client(timeout=30) as c:
            listed = c.get("/v1/functions")
            # inside Serve the replica is named by Serve's replica id, not the host-and-pid fallback
            replica = listed.headers["x-cloudfn-replica"]
            assert replica and not replica.startswith(socket.gethostname()), replica
            functions = listed.json()
            assert "hello" in {f["name"] for f in functions["functions"]}  # examples deployed through that port
            rec = c.post("/v1/functions/hello/invocations", params={"wait": "60"}, json={"name": "Ada"}).json()
            assert rec["status"] == "succeeded", rec
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{plat.api_port}/healthz", timeout=2)  # nothing on the default-path port


def test_up_refuses_a_bad_serve_config_before_starting_anything(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("applications:\n  - name: cloudfn\n    import_path: x:y\n    deployments: [{name: Other}]\n")
    plat = PlatformProcess(extra_env={"CLOUDFN_SERVE_CONFIG": str(path)})
    with pytest.raises(RuntimeError, match="cloudfn up exited") as err:
        plat.__enter__()
    assert "'Other'" in str(err.value) and str(path) in str(err.value)
    assert not (plat.home / "admin.key").exists()  # nothing was started


def test_up_refuses_a_lake_uri_it_cannot_use() -> None:
    plat = PlatformProcess(extra_env={"CLOUDFN_LAKE_URI": "s3:///no-bucket"})
    with pytest.raises(RuntimeError, match="cloudfn up exited") as err:
        plat.__enter__()
    assert "s3://bucket/prefix" in str(err.value)
    assert not (plat.home / "admin.key").exists()
