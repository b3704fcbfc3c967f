"""Flap damping as pure logic: a rule that resolves and fires again within `window_s` stays one episode.

A resolution is held for `window_s` before it counts: firing again meanwhile reopens the same episode (no
resolved notice, no second firing notice); only a resolution that lasts the window closes the episode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Action = Literal["open", "reopen", "hold", "close"]


@dataclass(frozen=True)
class Episode:
    """The rule's open alert (if any) and when its held resolution began."""

    alert_id: int | None = None
    resolved_at: float | None = None


def damp(episode: Episode, transition: str | None, now: float, window_s: float) -> tuple[Episode, Action | None]:
    """What a rule transition means for its episode; the caller applies the action to its alert row.

    open: start a new alert; reopen: the held alert fires on; hold: resolved, not yet told; close: resolve the
    alert (at `episode.resolved_at`, or now when there is no window).
    """
    if transition == "firing":
        if episode.alert_id is not None and episode.resolved_at is not None and now - episode.resolved_at < window_s:
            return replace(episode, resolved_at=None), "reopen"
        return Episode(), "open"
    if transition == "resolved":
        if episode.alert_id is None:
            return episode, None
        if window_s <= 0:
            return replace(episode, resolved_at=now), "close"
        return replace(episode, resolved_at=now), "hold"
    if episode.resolved_at is not None and episode.alert_id is not None and now - episode.resolved_at >= window_s:
        return episode, "close"
    return episode, None
