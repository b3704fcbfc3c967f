"""`cloudfn notifications list`: the tenant's alert notices (the outbox) and how their delivery stands."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from serve_app.cli.common import api

notifications_app = typer.Typer(help="Alert notifications: what was sent to which receiver, and whether it arrived.",
                                no_args_is_help=True)


@notifications_app.command("list")
def notifications_list(
    limit: Annotated[int, typer.Option(help="newest N", min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List the newest notifications (pending ones are still being retried)."""
    rows: list[dict[str, Any]] = api("GET", "/v1/alert-notifications", params={"limit": limit})["notifications"]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "alert", "functions", "status", "receiver", "channel", "state", "attempts", "created",
                  "error")
    for n in rows:
        table.add_row(str(n["id"]), n["alertname"], ", ".join(n["functions"]), n["status"], n["receiver"],
                      n["channel"], n["state"], str(n["attempts"]), n["created_at"][:19], n["last_error"] or "")
    Console().print(table)
