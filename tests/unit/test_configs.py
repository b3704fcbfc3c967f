"""configs/: the Serve config against Serve's own schema (and what `cloudfn up` takes from it), the cluster
launcher's YAML against Ray's cluster schema, and the KubeRay manifests against the pinned CRD schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from core.settings import Settings
from serve_app.cli.serve_config import (
    ServeConfigError,
    load_serve_options,
    options_from_schema,
    parse_serve_config,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
SERVE_YAML = CONFIGS / "serve.yaml"
KUBERAY = CONFIGS / "kuberay"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def all_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# -- configs/serve.yaml ------------------------------------------------------------------------------------


def test_serve_yaml_is_a_valid_serve_deploy_config() -> None:
    schema = ServeDeploySchema.model_validate(load(SERVE_YAML))
    (app,) = schema.applications
    assert app.name == "cloudfn" and app.route_prefix == "/"
    assert app.import_path == "serve_app.deployment:app_builder"
    (dep,) = app.deployments
    assert dep.name == "CloudFnApi"
    assert schema.controller_options is not None
    assert schema.controller_options.runtime_env["env_vars"]["RAY_SERVE_ENABLE_HA_PROXY"] == "1"


def test_serve_yaml_states_the_deployments_own_defaults() -> None:
    """`cloudfn up` behaves as before the file existed: its options are the decorator's."""
    from serve_app.deployment import CloudFnApi

    opts = load_serve_options(Settings(serve_config=SERVE_YAML))
    d = opts.deployment
    assert d["num_replicas"] == CloudFnApi.num_replicas
    assert d["max_ongoing_requests"] == CloudFnApi.max_ongoing_requests
    assert d["ray_actor_options"] == CloudFnApi.ray_actor_options
    cfg = CloudFnApi._deployment_config
    assert d["health_check_period_s"] == cfg.health_check_period_s
    assert d["logging_config"]["log_level"] == cfg.logging_config["log_level"]
    assert d["logging_config"]["enable_access_log"] == cfg.logging_config["enable_access_log"]
    assert (opts.host, opts.port, opts.app_name, opts.route_prefix) == ("127.0.0.1", 8000, "cloudfn", "/")
    assert opts.proxy_location == "EveryNode"  # serve.start's default
    from cluster.ray_runtime import SERVE_ENV

    assert opts.env_vars == SERVE_ENV


def test_the_deployment_accepts_the_files_options() -> None:
    from serve_app.deployment import CloudFnApi

    d = load_serve_options(Settings(serve_config=SERVE_YAML)).deployment
    configured = CloudFnApi.options(**d)
    assert configured.max_ongoing_requests == d["max_ongoing_requests"]
    assert configured._deployment_config.health_check_period_s == d["health_check_period_s"]


def write_variant(tmp_path: Path, change: Any) -> Path:
    data = load(SERVE_YAML)
    change(data)
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_file_is_read_and_environment_variables_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def change(d: dict[str, Any]) -> None:
        d["http_options"]["port"] = 8123
        dep = d["applications"][0]["deployments"][0]
        dep["max_ongoing_requests"] = 1500
        dep["num_replicas"] = 2

    path = write_variant(tmp_path, change)
    for name in ("CLOUDFN_API_PORT", "CLOUDFN_API_HOST", "CLOUDFN_API_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    opts = load_serve_options(Settings(serve_config=path))
    assert opts.port == 8123 and opts.deployment["max_ongoing_requests"] == 1500
    assert opts.deployment["num_replicas"] == 2 and opts.source == path

    monkeypatch.setenv("CLOUDFN_API_PORT", "9001")
    monkeypatch.setenv("CLOUDFN_API_HOST", "0.0.0.0")
    monkeypatch.setenv("CLOUDFN_API_REPLICAS", "3")
    monkeypatch.setenv("CLOUDFN_SERVE_CONFIG", str(path))
    opts = load_serve_options(Settings())
    assert (opts.host, opts.port) == ("0.0.0.0", 9001)
    assert opts.deployment["num_replicas"] == 3
    assert opts.deployment["max_ongoing_requests"] == 1500  # what no variable names stays the file's


def test_replicas_variable_replaces_autoscaling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def change(d: dict[str, Any]) -> None:
        dep = d["applications"][0]["deployments"][0]
        del dep["num_replicas"]
        dep["autoscaling_config"] = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 500}

    path = write_variant(tmp_path, change)
    monkeypatch.delenv("CLOUDFN_API_REPLICAS", raising=False)
    assert load_serve_options(Settings(serve_config=path)).deployment["autoscaling_config"]["max_replicas"] == 4
    fixed = load_serve_options(Settings(serve_config=path, api_replicas=2)).deployment
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["applications"][0]["deployments"][0].update(num_replicas=-1), "num_replicas"),
        (lambda d: d["applications"][0].update(name="other"), "no application named 'cloudfn'"),
        (lambda d: d["applications"][0]["deployments"][0].update(name="Typo"), "'Typo'"),
        (lambda d: d["http_options"].update(port="eighty"), "port"),
        (lambda d: d.pop("applications"), "applications"),
    ],
)
def test_a_bad_serve_config_is_refused_with_the_reason(tmp_path: Path, change: Any, message: str) -> None:
    path = write_variant(tmp_path, change)
    with pytest.raises(ServeConfigError) as err:
        load_serve_options(Settings(serve_config=path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_unreadable_or_non_yaml_serve_config(tmp_path: Path) -> None:
    with pytest.raises(ServeConfigError, match="cannot read"):
        load_serve_options(Settings(serve_config=tmp_path / "missing.yaml"))
    with pytest.raises(ServeConfigError, match="not YAML"):
        parse_serve_config("applications: [", "x.yaml")
    with pytest.raises(ServeConfigError, match="mapping"):
        parse_serve_config("- 1\n- 2\n", "x.yaml")


def test_serve_deploy_builder_needs_an_external_database(monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_app.deployment import app_builder

    monkeypatch.delenv("CLOUDFN_DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="CLOUDFN_DATABASE_URL"):
        app_builder({})


# -- configs/ray-cluster.yaml ------------------------------------------------------------------------------


def test_ray_cluster_yaml_validates_against_rays_cluster_schema() -> None:
    import json

    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(CONFIGS / "ray-cluster.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)  # the file as written
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` checks, defaults filled in
    assert config["head_node_type"] in config["available_node_types"]
    head = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head and "cloudfn up" in head and "CLOUDFN_RAY_ADDRESS=auto" in head
    assert "--address=$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])


def test_ray_cluster_schema_catches_a_misspelt_field() -> None:
    import json

    import ray.autoscaler

    config = load(CONFIGS / "ray-cluster.yaml")
    config["head_start_ray_comands"] = config.pop("head_start_ray_commands")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)


# -- configs/kuberay/ --------------------------------------------------------------------------------------


def crd_schema(kind_file: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one version of a pinned CRD."""
    crd = load(KUBERAY / "crds" / kind_file)
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = v["schema"]["openAPIV3Schema"]
    return schema


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would prune (structural schema): a key neither in `properties` nor allowed by
    `additionalProperties` or `x-kubernetes-preserve-unknown-fields`."""
    out: list[str] = []
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            props = schema.get("properties", {})
            return [p for k, v in value.items() if k in props for p in unknown_fields(v, props[k], f"{path}.{k}")]
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if props is not None and k in props:
                out += unknown_fields(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                out += unknown_fields(v, extra, f"{path}.{k}")
            elif props is not None:
                out.append(f"{path}.{k}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return out


def rayservice() -> dict[str, Any]:
    (doc,) = all_documents(KUBERAY / "rayservice.yaml")
    return doc


def test_rayservice_validates_against_the_pinned_crd() -> None:
    doc = rayservice()
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayService")
    schema = crd_schema("ray.io_rayservices.v1.pruned.yaml", "v1")
    jsonschema.Draft7Validator(schema).validate(doc)
    assert unknown_fields(doc, schema) == []


def test_the_crd_check_catches_wrong_types_missing_and_unknown_fields() -> None:
    schema = crd_schema("ray.io_rayservices.v1.pruned.yaml", "v1")
    bad_type = rayservice()
    bad_type["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_type, schema)
    missing = rayservice()
    del missing["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, schema)
    typo = rayservice()
    typo["spec"]["serveConfigv2"] = typo["spec"].pop("serveConfigV2")
    assert unknown_fields(typo, schema) == [".spec.serveConfigv2"]


def test_rayservice_serves_the_same_config_as_serve_yaml_open_to_the_pod_network() -> None:
    embedded = ServeDeploySchema.model_validate(yaml.safe_load(rayservice()["spec"]["serveConfigV2"]))
    file = ServeDeploySchema.model_validate(load(SERVE_YAML))
    assert embedded.http_options.host == "0.0.0.0"
    a, b = embedded.model_dump(exclude_unset=True), file.model_dump(exclude_unset=True)
    a["http_options"].pop("host"), b["http_options"].pop("host")
    assert a == b
    assert options_from_schema(embedded, None).deployment == options_from_schema(file, None).deployment


def test_rayservice_wires_the_secret_the_lake_and_the_ports() -> None:
    (secret,) = all_documents(KUBERAY / "secret.yaml")
    assert (secret["apiVersion"], secret["kind"]) == ("v1", "Secret")
    keys = set(secret["stringData"])
    spec = rayservice()["spec"]["rayClusterConfig"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    workers = [g["template"]["spec"]["containers"][0] for g in spec["workerGroupSpecs"]]
    for container in [head, *workers]:
        env = {e["name"]: e for e in container["env"]}
        for e in env.values():
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys, e
        assert env["CLOUDFN_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
        assert env["CLOUDFN_LAKE_URI"]["value"].startswith("s3://")
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(env)
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert ports["serve"] == 8000 and ports["dashboard"] == 8265 and ports["metrics"] == 8080
    assert spec["headGroupSpec"]["rayStartParams"]["metrics-export-port"] == "8080"
