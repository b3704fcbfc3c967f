"""The dashboard's silences and notifications tables, from the API's shapes to what the views show."""

from __future__ import annotations

from typing import Any

from panel_dashboard.frames import notifications_frame, silences_frame

SILENCES: list[dict[str, Any]] = [
    {"id": "5d2c7b1e-0000-4000-8000-000000000001", "status": {"state": "active"},
     "matchers": [{"name": "function", "value": "pay.*", "isRegex": True, "isEqual": True},
                  {"name": "severity", "value": "info", "isRegex": False, "isEqual": False}],
     "startsAt": "2026-12-01T10:00:00.000Z", "endsAt": "2026-12-01T12:00:00.000Z", "createdBy": "ops",
     "comment": "deploy", "updatedAt": "2026-12-01T10:00:00.000Z"},
    {"id": "5d2c7b1e-0000-4000-8000-000000000002", "status": {"state": "expired"}, "matchers": [],
     "startsAt": "2026-12-01T08:00:00.000Z", "endsAt": "2026-12-01T09:00:00.000Z", "createdBy": "ops",
     "comment": "old", "updatedAt": "2026-12-01T09:00:00.000Z"},
]
NOTIFICATIONS: list[dict[str, Any]] = [
    {"id": 7, "dedup_id": "cfn-1", "receiver": "team", "channel": "webhook:http://x/hook", "status": "firing",
     "state": "pending", "attempts": 2, "alert_ids": [1, 2], "functions": ["pay", "cart"], "alertname": "slow",
     "created_at": "2026-12-01T10:00:01.000Z", "delivered_at": None, "last_error": "HTTP 503"},
]


def test_silences_frame_prints_amtool_matchers_and_hides_expired() -> None:
    df = silences_frame(SILENCES)
    assert list(df["matchers"]) == ['function=~"pay.*", severity!="info"']
    assert list(df["state"]) == ["active"] and list(df["ends"]) == ["2026-12-01 12:00:00"]


def test_notifications_frame_shows_delivery_state() -> None:
    df = notifications_frame(NOTIFICATIONS)
    row = df.iloc[0].to_dict()
    assert row["functions"] == "pay, cart" and row["delivery"] == "pending" and row["attempts"] == "2"
    assert row["time"] == "10:00:01"


def test_views_show_tables_or_say_the_route_is_missing() -> None:
    from panel_dashboard.client import ApiClient, ApiConfig
    from panel_dashboard.store import DataStore, Snapshot
    from panel_dashboard.views import NotificationsView, SilencesView

    store = DataStore(ApiClient(ApiConfig(url="http://127.0.0.1:9", key=None)))
    silences, notes = SilencesView(store), NotificationsView(store)
    silences.update(Snapshot(silences=SILENCES, notifications=None))
    notes.update(Snapshot(silences=SILENCES, notifications=None))
    assert silences.table.visible and len(silences.table.value) == 1
    assert not notes.table.visible and "not available" in notes.note.object
    notes.update(Snapshot(notifications=NOTIFICATIONS))
    assert notes.table.visible and list(notes.table.value["alert"]) == ["slow"]
