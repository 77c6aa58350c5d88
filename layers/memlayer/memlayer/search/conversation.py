"""Conversation-aware re-ranking on top of any search backend's hits: a soft boost for memories
that happened in the period the query names, and the neighbouring turns of the best hits.

Both work on a ranked list the backend already produced (deeper than what is returned), so
DynamoDB's in-memory index and Postgres share them; the turns around a hit come from the
search port's `turns_around`. Constants were chosen on held-out users of
the conversational benchmark (bench/retrieval/dialogue.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from memlayer.search.fusion import Hit
from memlayer.search.timeexpr import TimePeriod

# A memory inside the named period scores up to this much more; one a period-length away from
# it half as much. Soft: a strong text match from another time still ranks.
PERIOD_BOOST = 2.0
# Neighbours are added after each of the best `NEIGHBOUR_HITS` hits, `NEIGHBOUR_RADIUS` turns
# either side in its conversation, at this share of the hit's score.
NEIGHBOUR_HITS = 3
NEIGHBOUR_RADIUS = 2
NEIGHBOUR_SHARE = 0.5


def boost_period(
    hits: Sequence[Hit],
    period: TimePeriod,
    occurred_at: Callable[[str], float | None],
    *,
    boost: float = PERIOD_BOOST,
) -> list[Hit]:
    """Hits re-ordered with a boost for those that happened in (or near) `period`."""
    start, end = period.start.timestamp(), period.end.timestamp()
    span = max(end - start, 86_400.0)

    def boosted(hit: Hit) -> Hit:
        when = occurred_at(hit.memory_id)
        if when is None:
            return hit
        distance = max(start - when, when - end, 0.0) / span
        if distance >= 3:
            return hit
        return replace(hit, score=hit.score * (1.0 + boost * 0.5**distance))

    ranked = sorted((boosted(h) for h in hits), key=lambda h: -h.score)
    return _normalized(ranked)


def turn_window(turns: Sequence[str], memory_id: str, radius: int) -> list[str]:
    """The turns from `radius` before `memory_id` to `radius` after it (itself included), of
    a conversation's turns in order."""
    at = turns.index(memory_id)
    return list(turns[max(0, at - radius) : at + radius + 1])


def expansion_candidates(
    hits: Sequence[Hit], *, top: int = NEIGHBOUR_HITS, radius: int = NEIGHBOUR_RADIUS
) -> list[str]:
    """The hits whose turn windows `with_neighbours` may need: each expansion takes in at most
    `2 * radius` later hits, so the `top` it expands are among the first `top * (2r + 1)`."""
    return [hit.memory_id for hit in hits[: top * (2 * radius + 1)]]


def with_neighbours(
    hits: Sequence[Hit],
    windows: Mapping[str, Sequence[str]],
    *,
    top: int = NEIGHBOUR_HITS,
    share: float = NEIGHBOUR_SHARE,
) -> list[Hit]:
    """Hits with the neighbouring turns of the best `top` inserted right after them, nearest
    first (`neighbour_of` names the hit). A neighbour that is itself a lower hit moves up
    (keeping its own details); one that is already above stays where it is.
    `windows[memory_id]` lists the turns around a hit in conversation order, itself included
    (`turn_window`); a hit without one is no conversation turn."""
    by_id = {h.memory_id: h for h in hits}
    emitted: set[str] = set()
    out: list[Hit] = []
    expanded = 0
    for hit in hits:
        if hit.memory_id in emitted:
            continue
        emitted.add(hit.memory_id)
        out.append(hit)
        if expanded >= top:
            continue
        expanded += 1
        window = list(windows.get(hit.memory_id, ()))
        if hit.memory_id not in window:
            continue
        at = window.index(hit.memory_id)
        for i in sorted(range(len(window)), key=lambda i: abs(i - at)):
            neighbour_id = window[i]
            if neighbour_id in emitted:
                continue
            emitted.add(neighbour_id)
            own = by_id.get(neighbour_id)
            score = max(own.score, hit.score * share) if own else hit.score * share
            out.append(
                replace(own or Hit(neighbour_id, score), score=score, neighbour_of=hit.memory_id)
            )
    return out


def _normalized(hits: list[Hit]) -> list[Hit]:
    best = hits[0].score if hits else 0.0
    if best <= 1.0:
        return hits
    return [replace(h, score=h.score / best) for h in hits]
