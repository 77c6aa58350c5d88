"""Conversation-aware re-ranking on top of any search backend's hits: a soft boost for memories
that happened in the period the query names, and the neighbouring turns of the best hits.

Both work on a ranked list the backend already produced (deeper than what is returned), so
DynamoDB's in-memory index and Postgres share them. Constants were chosen on held-out users of
the conversational benchmark (bench/retrieval/dialogue.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from memlayer.search.fusion import Hit
from memlayer.search.timeexpr import TimePeriod

# A memory inside the named period scores up to this much more; one a period-length away from
# it half as much. Soft: a strong text match from another time still ranks.
PERIOD_BOOST = 2.0
# Neighbours are added after each of the best `NEIGHBOUR_HITS` hits, `NEIGHBOUR_RADIUS` turns
# either side, at this share of the hit's score.
NEIGHBOUR_HITS = 3
NEIGHBOUR_RADIUS = 2
NEIGHBOUR_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Turn:
    """Where a memory sits in its conversation (ordered by `position`)."""

    memory_id: str
    conversation_id: str
    position: float


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


def with_neighbours(
    hits: Sequence[Hit],
    turn_of: Callable[[str], Turn | None],
    turns_of: Callable[[str], Sequence[Turn]],
    *,
    top: int = NEIGHBOUR_HITS,
    radius: int = NEIGHBOUR_RADIUS,
    share: float = NEIGHBOUR_SHARE,
) -> list[Hit]:
    """Hits with the neighbouring turns of the best `top` inserted right after them, nearest
    first. A neighbour that is itself a lower hit moves up (keeping its own details); one that
    is already above stays where it is. `turns_of(conversation_id)` lists a conversation's
    turns in order."""
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
        turn = turn_of(hit.memory_id)
        if turn is None:
            continue
        turns = list(turns_of(turn.conversation_id))
        at = next((i for i, t in enumerate(turns) if t.memory_id == hit.memory_id), None)
        if at is None:
            continue
        window = range(max(0, at - radius), min(len(turns), at + radius + 1))
        for i in sorted(window, key=lambda i: abs(i - at)):
            neighbour_id = turns[i].memory_id
            if neighbour_id in emitted:
                continue
            emitted.add(neighbour_id)
            own = by_id.get(neighbour_id)
            share_score = hit.score * share
            out.append(
                replace(own, score=max(own.score, share_score))
                if own
                else Hit(neighbour_id, share_score)
            )
    return out


def _normalized(hits: list[Hit]) -> list[Hit]:
    best = hits[0].score if hits else 0.0
    if best <= 1.0:
        return hits
    return [replace(h, score=h.score / best) for h in hits]
