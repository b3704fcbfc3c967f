"""What every CLI command module shares: the one-line failure and an API call that fails that way."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer

from cloudfn import CloudFnError
from serve_app.cli.client import api_json


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, non-zero exit."""
    print(f"cloudfn: {message}", file=sys.stderr)
    raise typer.Exit(code)


def api(method: str, path: str, **kwargs: Any) -> Any:
    """Call a route with the configured key; its JSON body, or a one-line failure."""
    try:
        return api_json(method, path, **kwargs)
    except CloudFnError as exc:
        fail(str(exc))
