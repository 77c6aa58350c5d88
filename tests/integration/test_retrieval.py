"""Search, context and chat through the local cloud (offline providers: hash embeddings)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from tests.conftest import STORAGE_BACKEND, User, make_user, on_dynamodb_only, postgres_rows
from tests.fakes import FakeAnthropic, serve

NOTES = [
    "The staging database listens on port 6543 behind the bastion host",
    "Grandma's apple pie recipe: butter, flour, cinnamon and six apples",
    "Kubernetes pods restart when the liveness probe fails three times",
    "Flight to Lisbon departs Thursday at 7:40 from terminal 2",
]


def add(user: User, content: str, **extra: object) -> str:
    response = user.http.post("/v1/memories", json={"content": content, **extra})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def search(user: User, query: str, **body: object) -> list[dict]:
    response = user.http.post("/v1/search", json={"query": query, **body})
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["took_ms"] >= 0
    return payload["items"]


@pytest.fixture
def seeded(cloud: object, user: User) -> dict[str, str]:
    ids = {note: add(user, note) for note in NOTES}
    cloud.drain(timeout=30)  # type: ignore[attr-defined]
    return ids


def test_hybrid_search_finds_the_right_memory_with_highlights(
    user: User, seeded: dict[str, str]
) -> None:
    items = search(user, "which port does the staging database use?")
    assert items[0]["memory"]["id"] == seeded[NOTES[0]]
    assert items[0]["memory"]["status"] == "ready"
    assert 0 < items[0]["score"] <= 1
    assert any("<mark>" in h for h in items[0]["highlights"])
    for mode in ("keyword", "semantic"):
        assert search(user, "apple pie recipe", mode=mode)[0]["memory"]["id"] == seeded[NOTES[1]]


def test_pending_memories_are_found_by_keyword(cloud: object, user: User) -> None:
    memory_id = add(user, "zanzibar ferry timetable")  # searched before the pipeline runs
    items = search(user, "zanzibar ferry", mode="keyword")
    assert [item["memory"]["id"] for item in items] == [memory_id]
    cloud.drain(timeout=30)  # type: ignore[attr-defined]


def test_filters_and_duplicates(cloud: object, user: User) -> None:
    add(user, "rust borrow checker notes", kind="note", tags=["weekend-reading"])
    add(user, "rust borrow checker question", kind="prompt")
    first = add(user, "Same shared text about tea", kind="share")
    second = add(user, "Same shared text about tea", kind="share")
    cloud.drain(timeout=30)  # type: ignore[attr-defined]
    kinds = {i["memory"]["kind"] for i in search(user, "rust", filters={"kind": "prompt"})}
    assert kinds == {"prompt"}
    tagged = search(user, "rust", filters={"tags": ["weekend-reading"]})
    assert [i["memory"]["content"] for i in tagged] == ["rust borrow checker notes"]
    tea = search(user, "shared text about tea")
    assert [i["memory"]["content"] for i in tea].count("Same shared text about tea") == 1
    assert len({first, second} & {i["memory"]["id"] for i in tea}) == 1


def test_search_never_crosses_users(cloud: object) -> None:
    users = [make_user(cloud) for _ in range(6)]
    own: dict[str, set[str]] = {}
    for n, member in enumerate(users):
        own[member.user_id] = {
            add(member, f"shared topic: quarterly budget review number {k} of user {n}")
            for k in range(3)
        }
    cloud.drain(timeout=30)  # type: ignore[attr-defined]
    for member in users:
        for mode in ("hybrid", "semantic", "keyword"):
            found = {
                i["memory"]["id"] for i in search(member, "quarterly budget review", mode=mode)
            }
            assert found == own[member.user_id], mode
        member.http.close()


def test_edit_and_delete_show_in_the_very_next_search(user: User, seeded: dict[str, str]) -> None:
    target = seeded[NOTES[3]]
    assert search(user, "Lisbon flight")[0]["memory"]["id"] == target
    patched = user.http.patch(f"/v1/memories/{target}", json={"content": "Train to Porto"})
    assert patched.status_code == 200
    assert target not in {i["memory"]["id"] for i in search(user, "Lisbon", mode="keyword")}
    assert search(user, "Porto train", mode="keyword")[0]["memory"]["id"] == target
    assert user.http.delete(f"/v1/memories/{seeded[NOTES[2]]}").status_code == 204
    gone = {i["memory"]["id"] for i in search(user, "kubernetes liveness probe")}
    assert seeded[NOTES[2]] not in gone


def test_context_respects_budget_and_skips_what_the_chat_has(
    user: User, seeded: dict[str, str]
) -> None:
    whole = user.http.post("/v1/context", json={"query": "staging database port"}).json()
    assert seeded[NOTES[0]] in whole["memories"]
    assert "6543" in whole["context"]
    # A tight budget shrinks the framing instead of dropping the only relevant memory.
    tight = user.http.post(
        "/v1/context", json={"query": "staging database port", "max_tokens": 60}
    ).json()
    assert tight["memories"][:1] == [seeded[NOTES[0]]] and tight["tokens"] <= 60
    assert "6543" in tight["context"]
    used = []
    for budget in (60, 120, 400):
        block = user.http.post(
            "/v1/context", json={"query": "database port pie flight", "max_tokens": budget}
        ).json()
        assert block["tokens"] <= budget
        assert bool(block["context"]) == bool(block["memories"])
        used.append(len(block["memories"]))
    assert used == sorted(used) and used[-1] >= 2  # a bigger budget fits more
    skipped = user.http.post(
        "/v1/context",
        json={
            "query": "staging database port",
            "conversation_text": "Earlier you said: " + NOTES[0] + ". Thanks!",
        },
    ).json()
    assert seeded[NOTES[0]] not in skipped["memories"]
    assert "6543" not in skipped["context"]
    assert user.http.post("/v1/context", json={"query": "x", "max_tokens": 5}).status_code == 422


def test_offline_chat_quotes_memories_and_reports_them(user: User, seeded: dict[str, str]) -> None:
    response = user.http.post("/v1/chat", json={"message": "When is my flight to Lisbon?"})
    assert response.status_code == 200
    body = response.json()
    assert body["provider"] == "offline"
    assert "offline" in body["response"].lower()
    assert seeded[NOTES[3]] in body["context_used"]
    assert "Lisbon" in body["response"]


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with serve(FakeAnthropic(chat_text="Thursday at 7:40.")) as fake:
        yield fake


def test_chat_context_used_matches_what_the_model_was_given(
    monkeypatch: pytest.MonkeyPatch,
    user: User,
    seeded: dict[str, str],
    fake_anthropic: FakeAnthropic,
) -> None:
    from memlayer.api.retrieval import ChatIn
    from memlayer.services import retrieval
    from memlayer.settings import get_settings

    settings = get_settings().model_copy(
        update={
            "chat_provider": "anthropic",
            "anthropic_api_key": SecretStr("sk-ant-test"),
            "anthropic_base_url": fake_anthropic.url,
            "provider_max_retries": 0,
        }
    )
    monkeypatch.setattr(retrieval, "get_settings", lambda: settings)
    answer = asyncio.run(
        retrieval.chat(user.user_id, ChatIn(message="When is my flight to Lisbon?"))
    )
    assert answer.provider == "anthropic"
    assert answer.response == "Thursday at 7:40."
    assert len(fake_anthropic.requests) == 1
    sent = json.dumps(fake_anthropic.requests[0])
    assert answer.context_used and seeded[NOTES[3]] in answer.context_used
    for memory_id in seeded.values():
        assert (memory_id in sent) == (memory_id in answer.context_used)


def test_a_new_embedding_space_is_reembedded_not_mixed(
    cloud: object, monkeypatch: pytest.MonkeyPatch, user: User
) -> None:
    from tests.conftest import reset_caches

    memory_id = add(user, "Harbour tide tables for the spring sailing season")
    cloud.drain(timeout=30)  # type: ignore[attr-defined]
    old_space = _spaces(cloud, user.user_id)
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "128")
    reset_caches()
    try:
        # The first search ignores the old vectors (keyword still finds the memory) and asks
        # for re-embedding; after the embed queue drains, semantic search uses the new space.
        first = search(user, "tide tables", mode="hybrid")
        assert [i["memory"]["id"] for i in first] == [memory_id]
        cloud.drain(timeout=30)  # type: ignore[attr-defined]
        new_space = _spaces(cloud, user.user_id)
        assert new_space == {"hash:hash-v2:128"} != old_space
        semantic = search(user, "tide tables", mode="semantic")
        assert [i["memory"]["id"] for i in semantic] == [memory_id]
    finally:
        monkeypatch.undo()
        reset_caches()


def _spaces(cloud: object, user_id: str) -> set[str]:
    if STORAGE_BACKEND == "supabase":
        sql = "select embedding_space from memlayer.memories where user_id = $1"
        return {row[0] for row in postgres_rows(sql, user_id) if row[0]}
    ddb = cloud.boto3_client("dynamodb")  # type: ignore[attr-defined]
    items = ddb.query(
        TableName=cloud.table_name("Table"),  # type: ignore[attr-defined]
        KeyConditionExpression="PK = :pk AND begins_with(SK, :v)",
        ExpressionAttributeValues={":pk": {"S": f"USER#{user_id}"}, ":v": {"S": "VEC#"}},
    )["Items"]
    return {item["space"]["S"] for item in items}


def _ids(items: list[dict]) -> list[str]:
    return [i["memory"]["id"] for i in items]


QUERIES = ["Lisbon flight", "apple pie", "staging database port", "ferry Madeira", "pods"]


@on_dynamodb_only
def test_a_warm_index_catches_up_from_the_change_log(
    cloud: object, monkeypatch: pytest.MonkeyPatch, user: User, seeded: dict[str, str]
) -> None:
    from memlayer.storage import dynamo_search as retrieval

    search(user, "Lisbon flight")
    warm = retrieval._cache[user.user_id].index
    added = add(user, "Ferry to Madeira leaves Sunday at noon")  # pending: keyword finds it
    assert _ids(search(user, "Madeira ferry", mode="keyword")) == [added]
    patched = user.http.patch(f"/v1/memories/{seeded[NOTES[3]]}", json={"content": "Bus to Faro"})
    assert patched.status_code == 200
    assert user.http.delete(f"/v1/memories/{seeded[NOTES[2]]}").status_code == 204
    assert _ids(search(user, "Faro bus", mode="keyword")) == [seeded[NOTES[3]]]
    assert seeded[NOTES[2]] not in _ids(search(user, "kubernetes liveness probe"))
    cloud.drain(timeout=30)  # type: ignore[attr-defined]
    assert _ids(search(user, "Madeira ferry", mode="semantic"))[0] == added
    cached = retrieval._cache[user.user_id]
    assert cached.index is warm  # every change above was applied in place, no reload
    assert set(cached.records) == {*seeded.values(), added} - {seeded[NOTES[2]]}

    # the caught-up index ranks exactly like one loaded from scratch
    modes = ("hybrid", "semantic", "keyword")
    caught_up = {(q, m): _ids(search(user, q, mode=m)) for q in QUERIES for m in modes}
    retrieval._cache.pop(user.user_id).index.close()
    assert caught_up == {(q, m): _ids(search(user, q, mode=m)) for q, m in caught_up}
    reloaded = retrieval._cache[user.user_id].index
    assert reloaded is not warm

    # more changes than are worth catching up on: a full reload
    monkeypatch.setattr(retrieval, "CATCH_UP_MAX_CHANGES", 1)
    first, second = add(user, "Piano lesson Tuesday"), add(user, "Piano tuner visit")
    assert set(_ids(search(user, "piano", mode="keyword"))) == {first, second}
    assert retrieval._cache[user.user_id].index is not reloaded

    monkeypatch.undo()

    # the version moved but no entry is in the window (as if the clock were far off): a full
    # reload, never a silently missed change
    reloaded = retrieval._cache[user.user_id].index
    retrieval._cache[user.user_id].synced_at += 3600
    fourth = add(user, "Piano duet with Sam")
    assert fourth in _ids(search(user, "piano duet", mode="keyword"))
    assert retrieval._cache[user.user_id].index is not reloaded

    # a last sync older than the change log keeps: a full reload
    reloaded = retrieval._cache[user.user_id].index
    retrieval._cache[user.user_id].synced_at -= 2 * 86400
    third = add(user, "Piano recital in June")
    assert third in _ids(search(user, "piano recital", mode="keyword"))
    assert retrieval._cache[user.user_id].index is not reloaded
    cloud.drain(timeout=30)  # type: ignore[attr-defined]


@on_dynamodb_only
def test_the_change_log_names_changed_memories(cloud: object, user: User) -> None:
    from datetime import UTC, datetime, timedelta

    from memlayer.storage import get_store

    before = datetime.now(UTC) - timedelta(seconds=1)
    first = add(user, "first change")
    second = add(user, "second change")
    assert user.http.delete(f"/v1/memories/{first}").status_code == 204

    async def read(limit: int) -> list[str] | None:
        return await get_store().changed_memories(user.user_id, before, limit=limit)

    assert asyncio.run(read(10)) == [first, second]  # oldest change first, each id once
    assert asyncio.run(read(2)) is None  # three entries: more than the limit
    later = asyncio.run(
        get_store().changed_memories(
            user.user_id, datetime.now(UTC) + timedelta(seconds=5), limit=10
        )
    )
    assert later == []
    records, vectors = asyncio.run(get_store().get_memories(user.user_id, [first, second]))
    assert set(records) == {second} and vectors == {}
    cloud.drain(timeout=30)  # type: ignore[attr-defined]


@on_dynamodb_only
def test_a_warm_index_never_outlives_an_erase(cloud: object, user: User) -> None:
    from memlayer.storage import dynamo_search as retrieval
    from memlayer.storage import get_store

    erased = add(user, "Secret plan alpha for the surprise party")
    cloud.drain(timeout=30)  # type: ignore[attr-defined]
    assert _ids(search(user, "secret plan", mode="keyword")) == [erased]
    assert user.http.delete("/v1/me").status_code == 200
    fresh = add(user, "Fresh start beta")
    cloud.drain(timeout=30)  # type: ignore[attr-defined]
    # data_version restarts after an erase; even where it lands on the cached number again,
    # the profile's new generation keeps the erased memories out
    version = asyncio.run(get_store().index_version(user.user_id)).version  # type: ignore[attr-defined]
    retrieval._cache[user.user_id].version = version
    assert _ids(search(user, "secret plan", mode="keyword")) == []
    assert _ids(search(user, "fresh start", mode="keyword")) == [fresh]
    assert set(retrieval._cache[user.user_id].records) == {fresh}


def test_chat_context_leaves_out_unrelated_memories(cloud: object, user: User) -> None:
    port = add(user, "The staging database listens on port 6543")
    unrelated = add(user, "Grandma's apple pie recipe with cinnamon")
    cloud.drain(timeout=30)  # type: ignore[attr-defined]
    question = "which port does staging use?"
    # search ranks everything it has, the weakest last ...
    assert _ids(search(user, question))[0] == port
    assert unrelated in _ids(search(user, question, mode="semantic"))
    # ... but what goes to a chat model must be related to the question
    block = user.http.post("/v1/context", json={"query": question}).json()
    assert block["memories"] == [port]
    assert "apple" not in block["context"]
    chat = user.http.post("/v1/chat", json={"message": question}).json()
    assert chat["context_used"] == [port]
