"""The warm search index's persisted snapshot (storage/index_snapshot.py) through the local
cloud: a new container starts from it and catches up from the change log, and it is never
trusted past a change, another user's, or an erase."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import User, make_user, on_dynamodb_only
from tests.integration.test_retrieval import NOTES, QUERIES, _ids, add, search

pytestmark = on_dynamodb_only
MODES = ("hybrid", "semantic", "keyword")


@pytest.fixture(autouse=True)
def snapshots_for_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    from memlayer.storage import dynamo_search

    monkeypatch.setattr(dynamo_search, "SNAPSHOT_MIN_MEMORIES", 1)


def _key(user: User) -> str:
    return f"index/{quote(user.user_id, safe='')}/snapshot"


def _stored(cloud: Any, user: User) -> bytes | None:
    s3 = cloud.boto3_client("s3")
    try:
        obj = s3.get_object(Bucket=cloud.bucket_name("UploadsBucket"), Key=_key(user))
    except s3.exceptions.NoSuchKey:
        return None
    return bytes(obj["Body"].read())


def _store(cloud: Any, user: User, data: bytes) -> None:
    s3 = cloud.boto3_client("s3")
    s3.put_object(Bucket=cloud.bucket_name("UploadsBucket"), Key=_key(user), Body=data)


def _new_container(user: User) -> None:
    """Forgets the warm index, as a container that never served the user."""
    from memlayer.storage import dynamo_search

    cached = dynamo_search._cache.pop(user.user_id, None)
    if cached is not None:
        cached.index.close()


def _rankings(user: User) -> dict[tuple[str, str], list[str]]:
    return {(q, m): _ids(search(user, q, mode=m)) for q in QUERIES for m in MODES}


@pytest.fixture
def table_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The users whose index was loaded from the table (all their memories and vectors)."""
    from memlayer.storage.dynamo import DynamoStore

    loads: list[str] = []
    original = DynamoStore.all_memories

    async def all_memories(self: DynamoStore, user_id: str) -> Any:
        loads.append(user_id)
        return await original(self, user_id)

    monkeypatch.setattr(DynamoStore, "all_memories", all_memories)
    return loads


@pytest.fixture
def seeded(cloud: Any, user: User) -> dict[str, str]:
    ids = {note: add(user, note) for note in NOTES}
    cloud.drain(timeout=30)
    return ids


def test_a_new_container_starts_from_the_snapshot(
    cloud: Any, user: User, seeded: dict[str, str], table_loads: list[str]
) -> None:
    from memlayer.storage import dynamo_search, index_snapshot

    assert _stored(cloud, user) is None
    from_table = _rankings(user)  # the first search loads the table and writes the snapshot
    assert table_loads == [user.user_id]
    data = _stored(cloud, user)
    assert data is not None
    snapshot = index_snapshot.decode(data, user.user_id)
    assert {r.id for r in snapshot.records} == set(seeded.values()) == set(snapshot.vectors)

    _new_container(user)
    assert _rankings(user) == from_table  # the same ranking, without reading the table
    assert table_loads == [user.user_id]
    assert dynamo_search._cache[user.user_id].version == snapshot.version


def test_a_stale_snapshot_is_caught_up_and_never_resurrects_a_delete(
    cloud: Any, user: User, seeded: dict[str, str], table_loads: list[str]
) -> None:
    search(user, "Lisbon flight")
    stale = _stored(cloud, user)
    assert stale is not None
    added = add(user, "Ferry to Madeira leaves Sunday at noon")
    edited, deleted = seeded[NOTES[3]], seeded[NOTES[2]]
    assert user.http.patch(f"/v1/memories/{edited}", json={"content": "Bus to Faro"}).is_success
    assert user.http.delete(f"/v1/memories/{deleted}").status_code == 204
    assert _stored(cloud, user) is None  # a delete discards the snapshot
    cloud.drain(timeout=30)
    # as a container that loaded before the delete could still write it back afterwards
    _store(cloud, user, stale)
    table_loads.clear()

    _new_container(user)
    caught_up = _rankings(user)
    assert table_loads == []  # the snapshot, then the change log; not the table
    assert deleted not in {memory_id for ranked in caught_up.values() for memory_id in ranked}
    assert _ids(search(user, "kubernetes liveness probe", mode="keyword")) == []
    assert _ids(search(user, "Lisbon flight", mode="keyword")) == []  # the old text is gone
    assert _ids(search(user, "Faro bus", mode="keyword")) == [edited]
    assert _ids(search(user, "Madeira ferry", mode="semantic"))[0] == added
    _new_container(user)
    _store(cloud, user, b"")  # no usable snapshot: the table
    assert _rankings(user) == caught_up
    assert table_loads == [user.user_id]


def test_a_snapshot_older_than_the_change_log_is_not_used(
    cloud: Any, user: User, seeded: dict[str, str], table_loads: list[str]
) -> None:
    from memlayer.storage import index_snapshot

    search(user, "Lisbon flight")
    data = _stored(cloud, user)
    assert data is not None
    old = index_snapshot.decode(data, user.user_id)
    old.synced_at -= 2 * 86400  # its changes have left the log
    _store(cloud, user, index_snapshot.encode(old))
    assert user.http.delete(f"/v1/memories/{seeded[NOTES[0]]}").status_code == 204
    _store(cloud, user, index_snapshot.encode(old))
    table_loads.clear()

    _new_container(user)
    assert seeded[NOTES[0]] not in _ids(search(user, "staging database port"))
    assert table_loads == [user.user_id]
    assert index_snapshot.decode(_stored(cloud, user) or b"", user.user_id).synced_at > (
        old.synced_at + 86400
    )  # rewritten from the table


def test_a_snapshot_is_only_ever_its_own_users(
    cloud: Any, user: User, seeded: dict[str, str], table_loads: list[str]
) -> None:
    other = make_user(cloud)
    mine = add(other, "Other user's note about the staging database port")
    cloud.drain(timeout=30)
    search(user, "staging database port")
    users_snapshot = _stored(cloud, user)
    assert users_snapshot is not None
    # a snapshot under another user's key (a bug, a copy) is refused: read from the table
    _store(cloud, other, users_snapshot)
    assert _ids(search(other, "staging database port")) == [mine]
    assert table_loads[-1] == other.user_id
    other.http.close()


def test_erase_deletes_the_snapshot_and_a_late_write_of_it(
    cloud: Any, user: User, seeded: dict[str, str]
) -> None:
    from memlayer.storage import dynamo_search, get_search_index

    search(user, "Lisbon flight")
    assert _stored(cloud, user) is not None
    cached = dynamo_search._cache[user.user_id]
    receipt = user.http.delete("/v1/me")
    assert receipt.status_code == 200
    assert receipt.json()["deleted"]["files"] >= 1
    assert _stored(cloud, user) is None
    # a container that loaded before the erase writes its state afterwards: it sees the
    # profile's generation gone and deletes what it wrote
    asyncio.run(get_search_index()._persist(cached))  # type: ignore[attr-defined]
    assert _stored(cloud, user) is None
    fresh = add(user, "Fresh start after the erase")
    cloud.drain(timeout=30)
    assert _ids(search(user, "Lisbon flight", mode="keyword")) == []
    assert _ids(search(user, "fresh start", mode="keyword")) == [fresh]


def test_a_warm_index_rewrites_the_snapshot_after_many_changes(
    cloud: Any, monkeypatch: pytest.MonkeyPatch, user: User, seeded: dict[str, str]
) -> None:
    from memlayer.storage import dynamo_search, index_snapshot

    def stored() -> index_snapshot.Snapshot:
        return index_snapshot.decode(_stored(cloud, user) or b"", user.user_id)

    monkeypatch.setattr(dynamo_search, "SNAPSHOT_AFTER_CHANGES", 1000)
    search(user, "Lisbon flight")
    first = stored()
    added = [add(user, f"Piano lesson number {i}") for i in range(2)]
    assert len(_ids(search(user, "piano lesson", mode="keyword"))) == 2  # caught up
    assert (stored().version, stored().synced_at) == (first.version, first.synced_at)
    monkeypatch.setattr(dynamo_search, "SNAPSHOT_AFTER_CHANGES", 1)
    added.append(add(user, "Piano tuner visit"))
    search(user, "piano")
    rewritten = stored()
    assert rewritten.version > first.version
    assert rewritten.version == dynamo_search._cache[user.user_id].version
    assert {r.id for r in rewritten.records} == {*seeded.values(), *added}
    cloud.drain(timeout=30)
