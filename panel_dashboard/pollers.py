"""Pollers: one DataStore per process per logged-in tenant and role, polling with a live session's key."""

from __future__ import annotations

from core.access import Role
from panel_dashboard.auth import Login
from panel_dashboard.client import ApiClient, ApiConfig
from panel_dashboard.store import DataStore

Pair = tuple[str, Role]


class Pollers:
    """Hands each browser session the store of its login's tenant and role, and stops a store whose last session
    ended or logged out (a store keeps using a key only while a session logged in with that key is open)."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self._stores: dict[Pair, DataStore] = {}
        self._sessions: dict[Pair, dict[str, Login]] = {}

    def acquire(self, login: Login, session_id: str) -> DataStore:
        """The running store for LOGIN's tenant and role (started now if it is the first), counted for SESSION_ID."""
        pair = login.pair
        self._sessions.setdefault(pair, {})[session_id] = login
        store = self._stores.get(pair)
        if store is None:
            store = self._stores[pair] = DataStore(ApiClient(ApiConfig(self.api_url, login.key)))
        store.start()
        return store

    def release(self, pair: Pair, session_id: str) -> None:
        """SESSION_ID ended: stop its store if no session is left, or move it to a still logged-in key."""
        sessions = self._sessions.get(pair, {})
        sessions.pop(session_id, None)
        self._settle(pair)

    def logout(self, login: Login) -> None:
        """LOGIN logged out: its sessions no longer count, and its key is no longer used."""
        sessions = self._sessions.get(login.pair, {})
        for sid in [s for s, lg in sessions.items() if lg.sid == login.sid]:
            sessions.pop(sid)
        self._settle(login.pair)

    def store_count(self) -> int:
        """How many pollers run (for tests and the header)."""
        return sum(1 for s in self._stores.values() if s.running)

    def _settle(self, pair: Pair) -> None:
        store = self._stores.get(pair)
        sessions = self._sessions.get(pair, {})
        if store is None:
            return
        if not sessions:
            store.stop()
            del self._stores[pair]
            self._sessions.pop(pair, None)
            return
        keys = {lg.key for lg in sessions.values()}
        if store.client.config.key not in keys:
            old = store.client
            store.client = ApiClient(ApiConfig(self.api_url, next(iter(keys))))
            store.retire(old)
