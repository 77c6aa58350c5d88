"""Search that knows conversations: a hit brings the turns around it (`expand` on /v1/search,
always in /v1/context), in the order they were said, from the same conversation only."""

from __future__ import annotations

from tests.conftest import User
from tests.integration.test_retrieval import add, search


def _turn(user: User, text: str, conversation: str, minute: int) -> str:
    return add(
        user,
        text,
        kind="exchange",
        source={"provider": "claude", "conversation_id": conversation},
        occurred_at=f"2026-03-10T18:{minute:02d}:00Z",
    )


def test_a_hit_brings_its_neighbouring_turns(cloud: object, user: User) -> None:
    # saved out of order: the conversation's order is when each turn was said
    answer = _turn(user, "She accepted an offer from Corvel in Leeds, a big step up.", "c1", 2)
    named = _turn(user, "My coworker Priya told me some news today.", "c1", 0)
    between = _turn(user, "Oh? What happened with her?", "c1", 1)
    later = _turn(user, "Anyway, the weather has been grim all week.", "c1", 9)
    _turn(user, "Totally unrelated small talk about the weather.", "c2", 3)
    cloud.drain(timeout=30)  # type: ignore[attr-defined]

    plain = search(user, "Priya coworker news", mode="keyword")
    assert [i["memory"]["id"] for i in plain] == [named]
    assert plain[0]["neighbour_of"] is None

    expanded = search(user, "Priya coworker news", mode="keyword", expand=True)
    ids = [i["memory"]["id"] for i in expanded]
    # nearest first, two either side, from its own conversation only
    assert ids == [named, between, answer]
    assert [i["neighbour_of"] for i in expanded] == [None, named, named]
    assert expanded[1]["score"] < expanded[0]["score"]
    assert later not in ids
    assert (
        search(user, "Priya coworker news", mode="keyword", expand=True, limit=2) == (expanded[:2])
    )
    # the filters hold for the neighbours too
    assert [
        i["memory"]["id"]
        for i in search(
            user,
            "Priya coworker news",
            mode="keyword",
            expand=True,
            filters={"until": "2026-03-10T18:01:30Z"},
        )
    ] == [named, between]

    # the context block carries the turn that answers, though it shares no word with the query
    response = user.http.post(
        "/v1/context", json={"query": "Which company is Priya joining?", "max_tokens": 400}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["memories"][:3] == [named, between, answer]
    assert len(body["memories"]) == len(set(body["memories"]))
    assert "Corvel" in body["context"] and body["tokens"] <= 400
