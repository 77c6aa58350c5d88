from datetime import UTC, datetime

from memlayer.search.conversation import Turn, boost_period, with_neighbours
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


def _session(conv: str, ids: list[str]) -> list[Turn]:
    return [Turn(mid, conv, float(i)) for i, mid in enumerate(ids)]


def test_the_best_hits_bring_their_neighbouring_turns_once() -> None:
    turns = {
        "c1": _session("c1", ["a1", "a2", "a3", "a4", "a5"]),
        "c2": _session("c2", ["b1", "b2"]),
    }
    turn_of = {t.memory_id: t for ts in turns.values() for t in ts}
    hits = [Hit("a3", 1.0), Hit("b2", 0.8), Hit("x", 0.7), Hit("a4", 0.2)]
    out = with_neighbours(hits, turn_of.get, lambda c: turns[c], top=2, radius=1)
    ids = [h.memory_id for h in out]
    # a3's neighbours follow it (a4, a lower hit, moves up), then b2 with b1; x is no turn.
    assert ids == ["a3", "a2", "a4", "b2", "b1", "x"]
    assert len(ids) == len(set(ids))
    scores = {h.memory_id: h.score for h in out}
    assert scores["a2"] == 0.5 and scores["a4"] == 0.5 and scores["b1"] == 0.4


def test_neighbours_are_left_alone_past_the_top_hits() -> None:
    turns = {"c1": _session("c1", ["a1", "a2", "a3"])}
    turn_of = {t.memory_id: t for t in turns["c1"]}
    out = with_neighbours([Hit("x", 1.0), Hit("a2", 0.5)], turn_of.get, turns.__getitem__, top=1)
    assert [h.memory_id for h in out] == ["x", "a2"]
