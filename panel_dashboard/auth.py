"""Login with an API key: the login and logout pages, the signed session cookie and the server-side logins.

The key a user types is checked against the API (`GET /v1/whoami`) and kept in this process's memory only,
under a random session id; the browser holds that id in a signed, HTTP-only session cookie (gone when the browser
closes, or at logout). Bokeh asks `ConsoleAuth.get_user` on every page and websocket request.
"""

from __future__ import annotations

import html
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from bokeh.server.auth_provider import AuthProvider
from tornado.web import RequestHandler, decode_signed_value

from core.access import Role, parse_role

COOKIE = "cloudfn_session"
LOGIN_URL = "/login"
LOGOUT_URL = "/logout"
LOGIN_MAX_AGE_S = 12 * 3600  # a login older than this must log in again (the API re-checks the key anyway)


@dataclass(frozen=True)
class Login:
    """One browser session's login: its key and what the API says the key is."""

    sid: str
    key: str
    tenant: str
    role: Role
    key_name: str
    at: float = 0.0  # time.monotonic() of the login

    @property
    def pair(self) -> tuple[str, Role]:
        """The tenant and role: logins with the same pair share one poller."""
        return (self.tenant, self.role)

    def may(self, role: Role) -> bool:
        """Whether this login's role is at least ROLE."""
        return self.role >= role


class Logins:
    """The logged-in sessions of this process, by session id (memory only: a restart logs everyone out)."""

    def __init__(self, api_url: str, cookie_secret: str) -> None:
        self.api_url = api_url
        self.cookie_secret = cookie_secret
        self._by_sid: dict[str, Login] = {}

    async def verify(self, key: str) -> Login:
        """A new login for KEY if the API accepts it; LoginRefused with the reason otherwise."""
        key = key.strip()
        if not key:
            raise LoginRefused("enter an API key (cloudfn keys create … prints one; the operator's is admin.key)")
        try:
            async with httpx.AsyncClient(base_url=self.api_url, timeout=10) as http:
                r = await http.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as exc:
            raise LoginRefused(f"the API at {self.api_url} did not answer ({type(exc).__name__}); try again") from exc
        if r.status_code in (401, 403):
            raise LoginRefused("the API refused this key (wrong, revoked or expired)")
        if r.status_code != 200:
            raise LoginRefused(f"the API answered {r.status_code} when checking the key; try again")
        who = r.json()
        login = Login(sid=secrets.token_urlsafe(24), key=key, tenant=str(who["tenant"]),
                      role=parse_role(who["role"]), key_name=str(who.get("key_name") or who.get("key_id") or ""),
                      at=time.monotonic())
        self._by_sid = {sid: lg for sid, lg in self._by_sid.items() if not self._stale(lg)}
        self._by_sid[login.sid] = login
        return login

    def get(self, sid: str | None) -> Login | None:
        """The login of session id SID, if it is logged in (and not older than LOGIN_MAX_AGE_S)."""
        login = self._by_sid.get(sid) if sid else None
        return None if login is None or self._stale(login) else login

    @staticmethod
    def _stale(login: Login) -> bool:
        return time.monotonic() - login.at > LOGIN_MAX_AGE_S

    def drop(self, sid: str | None) -> Login | None:
        """Log SID out; the login it had, if any."""
        return self._by_sid.pop(sid, None) if sid else None

    def from_cookie(self, raw: str | None) -> Login | None:
        """The login of a raw (signed) session cookie value, as a Bokeh session sees its request's cookies."""
        if not raw:
            return None
        sid = decode_signed_value(self.cookie_secret, COOKIE, raw)
        return self.get(sid.decode() if sid else None)


class LoginRefused(Exception):
    """A key the login page does not accept; the message says why."""


class ConsoleAuth(AuthProvider):
    """Bokeh's auth hook: a request is someone's if its signed cookie names a live login; else to /login."""

    def __init__(self, logins: Logins) -> None:
        self.logins = logins
        super().__init__()

    @property
    def get_user(self) -> Any:
        def user(handler: RequestHandler) -> str | None:
            raw = handler.get_secure_cookie(COOKIE)
            login = self.logins.get(raw.decode() if raw else None)
            return login.sid if login else None
        return user

    @property
    def login_url(self) -> str:
        return LOGIN_URL


class LoginHandler(RequestHandler):
    """GET shows the form; POST checks the key against the API and sets the session cookie."""

    def initialize(self, logins: Logins) -> None:
        self.logins = logins

    def get(self) -> None:
        self.write(login_page("", self.get_argument("next", "/")))

    async def post(self) -> None:
        try:
            login = await self.logins.verify(self.get_body_argument("key", ""))
        except LoginRefused as exc:
            self.set_status(401)
            self.write(login_page(str(exc), self.get_argument("next", "/")))
            return
        self.set_secure_cookie(COOKIE, login.sid, expires_days=None, httponly=True, samesite="Strict")
        target = self.get_argument("next", "/")
        self.redirect(target if target.startswith("/") and not target.startswith("//") else "/")


class LogoutHandler(RequestHandler):
    """Forget the login and its cookie, then back to the login page."""

    def initialize(self, logins: Logins, on_logout: Any) -> None:
        self.logins = logins
        self.on_logout = on_logout

    def get(self) -> None:
        raw = self.get_secure_cookie(COOKIE)
        login = self.logins.drop(raw.decode() if raw else None)
        if login is not None:
            self.on_logout(login)
        self.clear_cookie(COOKIE)
        self.redirect(LOGIN_URL)


def login_page(error: str, target: str = "/") -> str:
    """The login form, with ERROR above it if the last try was refused; it comes back to TARGET."""
    note = f'<p class="error" id="login-error">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>CloudFunctions · log in</title>
<style>body{{font-family:system-ui,sans-serif;background:#f6f8fa;display:flex;justify-content:center;
padding-top:12vh}}form{{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:24px 28px;
width:420px}}input{{width:100%;box-sizing:border-box;padding:8px;margin:8px 0 16px;font-family:monospace}}
button{{background:#0969da;color:#fff;border:0;border-radius:6px;padding:8px 16px;font-size:15px}}
.error{{color:#cf222e}}</style></head><body>
<form method="post" action="{LOGIN_URL}?next={quote(target, safe='/')}"><h2>CloudFunctions console</h2>{note}
<label for="key">API key</label><input id="key" name="key" type="password" autocomplete="off"
placeholder="cfk_…" autofocus><button type="submit" id="login">Log in</button>
<p style="color:#57606a;font-size:13px">The key stays on the console's server for this browser session only;
what you see and may do is the key's tenant and role.</p></form></body></html>"""
