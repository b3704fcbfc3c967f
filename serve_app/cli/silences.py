"""`cloudfn silence add|list|expire`: silences with amtool's matcher syntax (`function=~"pay.*"`, `severity!=info`)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from analytics.alerting.durations import parse_duration
from analytics.alerting.matchers import Matcher, parse_matchers
from serve_app.cli.common import api, fail

silence_app = typer.Typer(help="Silences: mute matching alerts of your tenant for a while (amtool's syntax).",
                          no_args_is_help=True)
_out = Console()




def silence_body(matchers: list[str], *, duration: str, comment: str, author: str,
                 start: datetime | None = None) -> dict[str, Any]:
    """The POST /v1/silences body for amtool-style matchers; ValueError says what is wrong."""
    if not matchers:
        raise ValueError('give at least one matcher, e.g. function=~"pay.*" or alertname=slow')
    parsed: list[Matcher] = parse_matchers(matchers)
    seconds = parse_duration(duration)
    if seconds <= 0:
        raise ValueError("--duration must be positive, e.g. 2h")
    starts = start or datetime.now(UTC)
    return {"matchers": [m.api() for m in parsed], "startsAt": starts.isoformat(),
            "endsAt": (starts + timedelta(seconds=seconds)).isoformat(), "createdBy": author, "comment": comment}


@silence_app.command("add")
def silence_add(
    matchers: Annotated[list[str], typer.Argument(help='matchers like alertname=slow function=~"pay.*" '
                                                  'severity!=info')],
    comment: Annotated[str, typer.Option("--comment", "-c", help="why (required, as in Alertmanager)")],
    duration: Annotated[str, typer.Option("--duration", "-d", help="how long: 30m, 2h, 1d")] = "1h",
    author: Annotated[str | None, typer.Option("--author", "-a", help="createdBy (default: your user)")] = None,
) -> None:
    """Create a silence; print its id."""
    try:
        body = silence_body(matchers, duration=duration, comment=comment, author=author or getpass.getuser())
    except ValueError as exc:
        fail(str(exc))
    print(api("POST", "/v1/silences", json=body)["silenceID"])


def _matchers_text(raw: list[dict[str, Any]]) -> str:
    return ", ".join(str(Matcher(m["name"], m["value"], m.get("isRegex", False), m.get("isEqual", True)))
                     for m in raw)


@silence_app.command("list")
def silence_list(
    all_: Annotated[bool, typer.Option("--all", help="expired ones too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="ids only")] = False,
) -> None:
    """List your tenant's silences (active and pending unless --all)."""
    rows = [s for s in api("GET", "/v1/silences") if all_ or s["status"]["state"] != "expired"]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if quiet:
        for s in rows:
            print(s["id"])
        return
    table = Table("ID", "Matchers", "Starts", "Ends", "State", "Created by", "Comment")
    for s in rows:
        table.add_row(s["id"], _matchers_text(s["matchers"]), s["startsAt"], s["endsAt"], s["status"]["state"],
                      s["createdBy"], s["comment"])
    _out.print(table)


@silence_app.command("expire")
def silence_expire(ids: Annotated[list[str], typer.Argument(help="silence ids")]) -> None:
    """Expire silences now (their alerts notify again)."""
    for sid in ids:
        api("DELETE", f"/v1/silences/{sid}")
        print(f"silence {sid}: expired")
