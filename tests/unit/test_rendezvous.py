"""Each function's home replica: the same on every replica with the same view, spread over the replicas, and
only the functions of a replica that leaves move."""

from __future__ import annotations

from collections import Counter

from serve_app.replicas.membership import rendezvous

FUNCTIONS = [f"default/fn{i}" for i in range(2000)]


def test_homes_spread_evenly_and_agree_whatever_the_order_of_the_view() -> None:
    view = ["r-a", "r-b", "r-c"]
    homes = {f: rendezvous(view, f) for f in FUNCTIONS}
    assert homes == {f: rendezvous(list(reversed(view)), f) for f in FUNCTIONS}
    counts = Counter(homes.values())
    assert set(counts) == set(view) and min(counts.values()) > 2000 / 3 * 0.85


def test_only_the_functions_of_a_replica_that_leaves_move() -> None:
    before = {f: rendezvous(["r-a", "r-b", "r-c"], f) for f in FUNCTIONS}
    after = {f: rendezvous(["r-a", "r-c"], f) for f in FUNCTIONS}
    moved = {f for f in FUNCTIONS if before[f] != after[f]}
    assert moved == {f for f in FUNCTIONS if before[f] == "r-b"}
