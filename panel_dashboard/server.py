"""`python -m panel_dashboard --port N`: serve the console at http://127.0.0.1:N/ (log in with an API key)."""

from __future__ import annotations

import argparse
import logging
import secrets
from collections.abc import Callable
from typing import Any

import panel as pn

from panel_dashboard.actions import Actions
from panel_dashboard.app import function_page, overview_page
from panel_dashboard.auth import COOKIE, LOGIN_URL, LOGOUT_URL, ConsoleAuth, Login, LoginHandler, Logins, LogoutHandler
from panel_dashboard.client import ApiConfig
from panel_dashboard.pollers import Pollers

log = logging.getLogger(__name__)
UNUSED_SESSION_MS = 3000


class Console:
    """The process: its logins, its pollers (one per tenant and role) and the per-session page factories."""

    def __init__(self, api_url: str) -> None:
        self.logins = Logins(api_url, secrets.token_hex(32))
        self.pollers = Pollers(api_url)

    def session(self, build: Callable[[Any, Actions, Login], Any]) -> Any:
        """A page for the current session's login (Bokeh has already sent anyone without one to /login)."""
        login = self.logins.from_cookie(pn.state.cookies.get(COOKIE))
        if login is None:  # logged out in another tab since this page was requested
            return pn.pane.HTML(f'<p>Logged out. <a href="{LOGIN_URL.lstrip("/")}">Log in</a></p>')
        session_id = pn.state.curdoc.session_context.id if pn.state.curdoc and pn.state.curdoc.session_context else ""
        store = self.pollers.acquire(login, session_id)
        actions = Actions(self.logins.api_url, login.key)

        def ended(_ctx: Any) -> None:
            self.pollers.release(login.pair, session_id)

        pn.state.on_session_destroyed(ended)
        return build(store, actions, login)

    def overview(self) -> Any:
        return self.session(overview_page)

    def function(self) -> Any:
        raw = pn.state.session_args.get("name") or [b""]
        name = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        return self.session(lambda store, actions, login: function_page(name, store, actions, login))


def main(argv: list[str] | None = None) -> None:
    """Parse --port, serve the console's pages behind the API-key login."""
    ap = argparse.ArgumentParser(prog="python -m panel_dashboard", description=__doc__)
    ap.add_argument("--port", type=int, default=5006)
    ap.add_argument("--address", default="127.0.0.1")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per poll request would flood the log
    console = Console(ApiConfig.url_from_env())
    origins = [f"{h}:{a.port}" for h in ("127.0.0.1", "localhost", a.address)]
    server = pn.serve({"/": console.overview, "/function": console.function}, port=a.port, address=a.address,
                      show=False, start=False, title="CloudFunctions", websocket_origin=origins,
                      cookie_secret=console.logins.cookie_secret, auth_provider=ConsoleAuth(console.logins),
                      # a closed tab's session (and its redraws) ends within seconds, not Bokeh's default 15-30 s
                      check_unused_sessions_milliseconds=UNUSED_SESSION_MS,
                      unused_session_lifetime_milliseconds=UNUSED_SESSION_MS,
                      extra_patterns=[(LOGIN_URL, LoginHandler, {"logins": console.logins}),
                                      (LOGOUT_URL, LogoutHandler, {"logins": console.logins,
                                                                   "on_logout": console.pollers.logout})])
    server.start()
    server.io_loop.start()
