from datetime import UTC, datetime

from memlayer.search.conversation import (
    boost_period,
    expansion_candidates,
    turn_window,
    with_neighbours,
)
from memlayer.search.fusion import Hit
from memlayer.search.timeexpr import resolve

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _at(month: int, day: int) -> float:
    return datetime(2026, month, day, tzinfo=UTC).timestamp()


def test_memories_of_the_named_period_rank_first_without_hiding_the_rest() -> None:
    period = resolve("what did I decide about the lease in March", NOW)
    assert period is not None
    when = {"june": _at(6, 7), "march": _at(3, 4), "april": _at(4, 2), "none": None}
    hits = [Hit("june", 0.9), Hit("march", 0.6), Hit("april", 0.55), Hit("none", 0.5)]
    ranked = boost_period(hits, period, when.get)
    assert [h.memory_id for h in ranked] == ["march", "april", "june", "none"]
    assert ranked[0].score == 1.0  # normalized to the best
    assert len(ranked) == len(hits)


def _windows(sessions: list[list[str]], radius: int) -> dict[str, list[str]]:
    return {mid: turn_window(turns, mid, radius) for turns in sessions for mid in turns}


def test_a_turn_window_is_cut_at_the_conversations_ends() -> None:
    turns = ["a1", "a2", "a3", "a4", "a5"]
    assert turn_window(turns, "a3", 1) == ["a2", "a3", "a4"]
    assert turn_window(turns, "a1", 2) == ["a1", "a2", "a3"]
    assert turn_window(turns, "a5", 2) == ["a3", "a4", "a5"]


def test_the_best_hits_bring_their_neighbouring_turns_once() -> None:
    windows = _windows([["a1", "a2", "a3", "a4", "a5"], ["b1", "b2"]], radius=1)
    hits = [Hit("a3", 1.0), Hit("b2", 0.8), Hit("x", 0.7), Hit("a4", 0.2)]
    out = with_neighbours(hits, windows, top=2)
    ids = [h.memory_id for h in out]
    # a3's neighbours follow it (a4, a lower hit, moves up), then b2 with b1; x is no turn.
    assert ids == ["a3", "a2", "a4", "b2", "b1", "x"]
    assert len(ids) == len(set(ids))
    scores = {h.memory_id: h.score for h in out}
    assert scores["a2"] == 0.5 and scores["a4"] == 0.5 and scores["b1"] == 0.4
    assert {h.memory_id: h.neighbour_of for h in out} == {
        "a3": None,
        "a2": "a3",
        "a4": "a3",
        "b2": None,
        "b1": "b2",
        "x": None,
    }


def test_neighbours_are_left_alone_past_the_top_hits() -> None:
    windows = _windows([["a1", "a2", "a3"]], radius=1)
    out = with_neighbours([Hit("x", 1.0), Hit("a2", 0.5)], windows, top=1)
    assert [h.memory_id for h in out] == ["x", "a2"]


def test_the_hits_to_expand_are_among_the_candidates_read() -> None:
    """A hit taken in as a neighbour is not expanded itself, so the next one is: the windows
    read for `expansion_candidates` always cover the hits that get expanded."""
    sessions = [[f"c{c}t{t}" for t in range(7)] for c in range(3)]
    # the best hits of each conversation sit next to each other: each expansion absorbs 2
    hits = [Hit(f"c{c}t{t}", 1.0 - 0.1 * c - 0.01 * t) for c in range(3) for t in (3, 2, 4)]
    hits += [Hit(f"c{c}t6", 0.3 - 0.1 * c) for c in range(3)]  # lower hits, not expanded
    candidates = expansion_candidates(hits, top=3, radius=1)
    assert len(candidates) == 9 < len(hits)
    windows = _windows(sessions, radius=1)
    full = with_neighbours(hits, windows, top=3)
    read = with_neighbours(hits, {m: windows[m] for m in candidates}, top=3)
    assert read == full
    expanded = [h.memory_id for h in full if h.neighbour_of is None][:3]
    assert expanded == ["c0t3", "c1t3", "c2t3"]
