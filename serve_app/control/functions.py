"""Parsing a deploy's parts: the function's name, its handler and its config (the repository is core.db.functions)."""

from __future__ import annotations

import json

from pydantic import ValidationError

from core.errors import InvalidInput
from core.models import DEFAULT_HANDLERS, NAME_PATTERN, NAME_RE, PYTHON_RUNTIME, FunctionConfig, check_handler
from core.settings import Settings, get_settings


def parse_name(name: str) -> str:
    """Check a function name against the contract's pattern."""
    if not NAME_RE.match(name or ""):
        raise InvalidInput(f"name {name!r} must match {NAME_PATTERN} (lowercase letters, digits, dashes)")
    return name


def parse_handler(handler: str | None, runtime: str = PYTHON_RUNTIME) -> str:
    """Check a handler string (Python: module.function; Node.js: file.export), defaulting to the runtime's
    own default (main.handler, index.handler)."""
    h = (handler or DEFAULT_HANDLERS[runtime]).strip()
    try:
        check_handler(h, runtime)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return h


def parse_config(raw: str | None) -> FunctionConfig:
    """Parse the upload's `config` JSON into a FunctionConfig."""
    if raw is None or raw.strip() == "":
        return FunctionConfig()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"config is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("config must be a JSON object, e.g. {\"timeout_s\": 30}")
    try:
        cfg = FunctionConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "config"
        raise InvalidInput(f"config.{where}: {err['msg']}") from None
    check_caps(cfg, get_settings())
    return cfg


def check_caps(cfg: FunctionConfig, s: Settings) -> None:
    """Refuse a config asking for more than the operator's caps (CLOUDFN_CAP_*), naming the field and cap."""
    asked = {"memory_mb": (cfg.memory_mb, s.cap_memory_mb, "CLOUDFN_CAP_MEMORY_MB"),
             "max_processes": (cfg.max_processes, s.cap_processes, "CLOUDFN_CAP_PROCESSES"),
             "cpu_s": (cfg.cpu_s if cfg.cpu_s is not None else cfg.timeout_s, s.cap_cpu_s, "CLOUDFN_CAP_CPU_S"),
             "max_file_mb": (cfg.max_file_mb, s.cap_tmp_mb, "CLOUDFN_CAP_TMP_MB"),
             "max_output_kb": (cfg.max_output_kb, s.cap_output_kb, "CLOUDFN_CAP_OUTPUT_KB"),
             "max_open_files": (cfg.max_open_files, s.cap_open_files, "CLOUDFN_CAP_OPEN_FILES")}
    for field, (value, cap, setting) in asked.items():
        if value > cap:
            raise InvalidInput(f"config.{field}: {value:g} is above this platform's cap of {cap:g} ({setting})")
