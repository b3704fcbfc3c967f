"""`cloudfn tenants create|list|quota` and `cloudfn keys create|list|revoke|rotate`: tenants, their quotas and
API keys over the API."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from core.access import ROLE_NAMES
from serve_app.cli.common import api

tenants_app = typer.Typer(help="Tenants (teams): the operator's key creates them.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys with roles (admin, developer, invoker, viewer).", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]
_out = Console()


def register(app: typer.Typer) -> None:
    """Add the `tenants` and `keys` command groups to the CLI."""
    app.add_typer(tenants_app, name="tenants")
    app.add_typer(keys_app, name="keys")




def _emit(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


@tenants_app.command("create")
def tenants_create(name: str, as_json: JsonFlag = False) -> None:
    """Create a tenant (needs the operator's key: an admin of the default tenant)."""
    t = api("POST", "/v1/tenants", json={"name": name})
    _emit(t) if as_json else _out.print(f"tenant [bold]{t['name']}[/bold] created")


@tenants_app.command("list")
def tenants_list(as_json: JsonFlag = False) -> None:
    """Tenants this key may manage (every tenant for the operator)."""
    rows = api("GET", "/v1/tenants")["tenants"]
    if as_json:
        _emit(rows)
        return
    t = Table("tenant", "created")
    for r in rows:
        t.add_row(r["name"], r["created_at"][:19])
    _out.print(t)


@tenants_app.command("quota")
def tenants_quota(name: str, concurrency: Annotated[int | None, typer.Option(
                      min=1, help="its executions running at once (the rest wait queued)")] = None,
                  queued_tasks: Annotated[int | None, typer.Option(
                      min=0, help="its invocations waiting to run; beyond them, 429")] = None,
                  functions: Annotated[int | None, typer.Option(min=0, help="its live functions")] = None,
                  bundle_bytes: Annotated[int | None, typer.Option(
                      min=0, help="bytes of the distinct bundles its functions use")] = None,
                  invocations_per_s: Annotated[int | None, typer.Option(
                      min=1, help="its token bucket's refill rate")] = None,
                  burst: Annotated[int | None, typer.Option(min=1, help="the bucket's size")] = None,
                  reset: Annotated[list[str] | None, typer.Option(
                      help="a quota to set back to the platform default (repeatable)")] = None,
                  as_json: JsonFlag = False) -> None:
    """Show a tenant's quotas; with options, set them (needs the operator's key)."""
    changes: dict[str, Any] = {k: v for k, v in {
        "concurrency": concurrency, "queued_tasks": queued_tasks, "functions": functions,
        "bundle_bytes": bundle_bytes, "invocations_per_s": invocations_per_s, "burst": burst}.items()
        if v is not None}
    changes.update({r: None for r in reset or []})
    path = f"/v1/tenants/{name}/quotas"
    q = api("PUT", path, json=changes) if changes else api("GET", path)
    if as_json:
        _emit(q)
        return
    t = Table("quota", "limit", "in use", "set by")
    for k, limit in q["quotas"].items():
        t.add_row(k, str(limit), str(q["usage"].get(k, "")), "operator" if q["overrides"].get(k) is not None
                  else "default")
    _out.print(t)


def _print_new_key(k: dict[str, Any], as_json: bool) -> None:
    """The new key on stdout (shown this once), what it is on stderr."""
    if as_json:
        _emit(k)
        return
    print(k["key"])
    expiry = f", expires {k['expires_at']}" if k.get("expires_at") else ""
    print(f"key {k['id']} ({k['role']} of {k['tenant']}, {k['name']!r}{expiry}): shown only now, store it",
          file=sys.stderr)


@keys_app.command("create")
def keys_create(role: Annotated[str, typer.Option(help="/".join(ROLE_NAMES))],
                name: Annotated[str, typer.Option(help="what the key is for, e.g. ci")],
                tenant: Annotated[str | None, typer.Option(help="its tenant (default: this key's own)")] = None,
                expires_at: Annotated[str | None, typer.Option(help="ISO-8601 expiry, e.g. 2030-01-01T00:00Z")] = None,
                as_json: JsonFlag = False) -> None:
    """Create a key; prints the key itself (only this once)."""
    body: dict[str, Any] = {"role": role, "name": name}
    if tenant is not None:
        body["tenant"] = tenant
    if expires_at is not None:
        body["expires_at"] = expires_at
    _print_new_key(api("POST", "/v1/keys", json=body), as_json)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="only this tenant (operator)")] = None,
              include_revoked: Annotated[bool, typer.Option("--all", help="revoked keys too")] = False,
              as_json: JsonFlag = False) -> None:
    """Keys (never their secrets): this key's tenant, or every tenant for the operator."""
    params: dict[str, Any] = {"include_revoked": include_revoked}
    if tenant is not None:
        params["tenant"] = tenant
    rows = api("GET", "/v1/keys", params=params)["keys"]
    if as_json:
        _emit(rows)
        return
    t = Table("id", "tenant", "role", "name", "prefix", "created", "expires", "revoked")
    for k in rows:
        t.add_row(str(k["id"]), k["tenant"], k["role"], k["name"], k["prefix"] or "", k["created_at"][:19],
                  (k["expires_at"] or "")[:19], (k["revoked_at"] or "")[:19])
    _out.print(t)


@keys_app.command("revoke")
def keys_revoke(key_id: int, as_json: JsonFlag = False) -> None:
    """Revoke a key (refused on every replica within 5 s)."""
    k = api("DELETE", f"/v1/keys/{key_id}")
    _emit(k) if as_json else _out.print(f"key {k['id']} ({k['name']!r} of {k['tenant']}) revoked")


@keys_app.command("rotate")
def keys_rotate(key_id: int, as_json: JsonFlag = False) -> None:
    """Replace a key by a new one (same tenant, role, name, expiry); prints the new key, the old one stops."""
    _print_new_key(api("POST", f"/v1/keys/{key_id}/rotate"), as_json)
