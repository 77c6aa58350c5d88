"""A share's `upload_ids` name the caller's own, existing, attachable uploads (else 404/422),
and deleting a memory deletes exactly its own objects: never a prefix that matches more."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from memlayer.ids import new_id
from tests.conftest import User
from tests.integration.test_uploads import objects_under, upload


def share(user: User, upload_ids: list[str]) -> Any:
    return user.http.post("/v1/shares", json={"text": "files I shared", "upload_ids": upload_ids})


@pytest.mark.parametrize(
    "upload_ids",
    [
        pytest.param([""], id="empty"),
        pytest.param(["x" * 45_000] * 10, id="ten-45KB-strings"),
        pytest.param(["not-an-id"], id="not-an-id"),
        pytest.param([new_id() for _ in range(11)], id="too-many"),
    ],
)
def test_malformed_upload_ids_are_refused(user: User, upload_ids: list[str]) -> None:
    response = share(user, upload_ids)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error" and body["request_id"]
    assert any("upload_ids" in error["loc"] for error in body["detail"])


def test_the_same_upload_twice_is_refused(cloud: Any, user: User) -> None:
    done = upload(user, "twice.txt", "text/plain", b"one file")
    response = share(user, [done["upload_id"], done["upload_id"]])
    assert response.status_code == 422, response.text
    assert "twice" in response.text


def test_unknown_and_foreign_uploads_are_not_found(
    cloud: Any, user: User, other_user: User
) -> None:
    theirs = upload(other_user, "theirs.txt", "text/plain", b"someone else's file")
    for upload_ids in ([new_id()], [theirs["upload_id"]]):
        response = share(user, upload_ids)
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"
    assert user.http.get("/v1/memories", params={"kind": "share"}).json()["items"] == []
    prefix = f"uploads/{other_user.user_id}/{theirs['upload_id']}/"
    assert objects_under(cloud, prefix) == [f"{prefix}theirs.txt"]


def test_a_failed_upload_cannot_be_attached(cloud: Any, user: User) -> None:
    failed = upload(user, "fake.pdf", "application/pdf", b"this is not a pdf at all")
    assert failed["status"] == "failed"
    response = share(user, [failed["upload_id"]])
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "upload_state"


def test_deleting_a_share_deletes_only_its_own_uploads(cloud: Any, user: User) -> None:
    attached = upload(user, "attached.txt", "text/plain", b"attached to the share")
    kept = upload(user, "kept.txt", "text/plain", b"another upload of the same user")
    created = share(user, [attached["upload_id"]])
    assert created.status_code == 202, created.text
    cloud.drain(timeout=60)

    deleted = user.http.delete(f"/v1/memories/{created.json()['memory_id']}")

    assert deleted.status_code == 204
    assert objects_under(cloud, f"uploads/{user.user_id}/{attached['upload_id']}/") == []
    kept_prefix = f"uploads/{user.user_id}/{kept['upload_id']}/"
    assert objects_under(cloud, kept_prefix) == [f"{kept_prefix}kept.txt"]
    assert user.http.get(f"/v1/uploads/{kept['upload_id']}").json()["status"] == "completed"


def test_a_stored_empty_upload_id_deletes_nothing_else(cloud: Any, user: User) -> None:
    """A memory written before ids were checked may carry `""`: its prefix would be the
    user's whole folder. Deleting the memory must leave every other object alone."""
    from memlayer.services import memories

    kept = upload(user, "kept.txt", "text/plain", b"must survive the delete")
    created = asyncio.run(
        memories.create(
            user.user_id, memories.Draft(content="old share", kind="share", upload_ids=[""])
        )
    )

    deleted = user.http.delete(f"/v1/memories/{created.memory.id}")

    assert deleted.status_code == 204
    kept_prefix = f"uploads/{user.user_id}/{kept['upload_id']}/"
    assert objects_under(cloud, kept_prefix) == [f"{kept_prefix}kept.txt"]
    assert user.http.get(f"/v1/uploads/{kept['upload_id']}").json()["status"] == "completed"
