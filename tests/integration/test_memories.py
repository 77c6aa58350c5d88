"""The /v1/memories calls through the local cloud: API Gateway event → Mangum → FastAPI →
DynamoDB (moto), exactly as deployed."""

from __future__ import annotations

import httpx

from tests.conftest import STORAGE_BACKEND, User


def create(user: User, content: str = "a note about tides", **extra: object) -> dict:
    response = user.http.post("/v1/memories", json={"content": content, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def test_create_then_get_returns_the_stored_memory(user: User) -> None:
    created = create(
        user,
        "Ports: staging db on 6543",
        kind="note",
        tags=["Infra", "infra", "db"],
        metadata={"source": "test"},
        source={"url": "https://example.com/a", "provider": "chatgpt"},
    )
    assert created["status"] == "pending"
    assert created["tags"] == ["infra", "db"]
    assert created["version"] == 1
    assert created["job_id"]
    fetched = user.http.get(f"/v1/memories/{created['id']}")
    assert fetched.status_code == 200
    body = fetched.json()
    assert body["content"] == "Ports: staging db on 6543"
    assert body["source"]["provider"] == "chatgpt"
    assert body["metadata"] == {"source": "test"}


def test_every_response_has_request_id_and_process_time(user: User) -> None:
    response = user.http.get("/v1/memories", headers={"X-Request-ID": "client-id-123"})
    assert response.headers["x-request-id"] == "client-id-123"
    assert response.headers["x-process-time"].endswith("ms")
    missing = user.http.get("/v1/memories/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert missing.status_code == 404
    assert missing.json()["request_id"] == missing.headers["x-request-id"]


def test_another_users_memory_is_404_and_absent_from_lists(user: User, other_user: User) -> None:
    mine = create(user, "private thought")
    path = f"/v1/memories/{mine['id']}"
    assert other_user.http.get(path).status_code == 404
    assert other_user.http.patch(path, json={"tags": ["x"]}).status_code == 404
    assert other_user.http.delete(path).status_code == 404
    assert other_user.http.get("/v1/memories").json()["items"] == []
    still = user.http.get(path).json()
    assert still["tags"] == [] and still["content"] == "private thought"


def test_bad_or_missing_token_is_401_with_www_authenticate(cloud: object) -> None:
    base = cloud.base_url  # type: ignore[attr-defined]
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = httpx.get(f"{base}/v1/memories", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"] == "unauthorized"


def test_invalid_bodies_are_422_with_field_detail(user: User) -> None:
    cases = [
        ({}, ["body", "content"]),
        ({"content": "   "}, ["body", "content"]),
        ({"content": "x", "kind": "poem"}, ["body", "kind"]),
        ({"content": "x", "tags": "notalist"}, ["body", "tags"]),
        ({"content": "x", "occurred_at": "yesterday"}, ["body", "occurred_at"]),
        ({"content": "x", "tags": [f"t{i}" for i in range(51)]}, ["body", "tags"]),
        ({"content": "x", "metadata": {"blob": "y" * 17_000}}, ["body", "metadata"]),
    ]
    for body, loc in cases:
        response = user.http.post("/v1/memories", json=body)
        assert response.status_code == 422, (body, response.text)
        detail = response.json()["detail"]
        assert any(item["loc"][:2] == loc for item in detail), detail
    not_json = user.http.post(
        "/v1/memories", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422
    assert user.http.get("/v1/memories").json()["items"] == []  # nothing partial was written


def test_oversize_content_is_rejected(user: User) -> None:
    response = user.http.post("/v1/memories", json={"content": "é" * 50_001})  # 100,002 bytes
    assert response.status_code == 422
    assert "limit" in response.json()["detail"][0]["msg"]
    huge = user.http.post("/v1/memories", json={"content": "x" * 2_000_000})
    assert huge.status_code == 413
    assert huge.json()["error"] == "payload_too_large"


def test_replayed_idempotency_key_returns_the_first_result(user: User) -> None:
    headers = {"Idempotency-Key": "create-1"}
    first = user.http.post("/v1/memories", json={"content": "once"}, headers=headers)
    again = user.http.post("/v1/memories", json={"content": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    different = user.http.post("/v1/memories", json={"content": "twice"}, headers=headers)
    assert different.status_code == 409
    assert different.json()["error"] == "conflict"
    items = user.http.get("/v1/memories").json()["items"]
    assert [item["content"] for item in items] == ["once"]


def test_pagination_walks_every_item_exactly_once(user: User) -> None:
    created = [create(user, f"memory number {i}")["id"] for i in range(23)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = user.http.get("/v1/memories", params=params).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 5
    assert seen == list(reversed(created))  # newest first, each once


def test_filters_and_a_forged_cursor(user: User, other_user: User) -> None:
    create(user, "tagged", tags=["keep"], kind="prompt")
    create(user, "untagged")
    page = user.http.get("/v1/memories", params={"tag": "keep"}).json()
    assert [item["content"] for item in page["items"]] == ["tagged"]
    page = user.http.get("/v1/memories", params={"kind": "prompt"}).json()
    assert [item["content"] for item in page["items"]] == ["tagged"]
    # A cursor lifted from one user's listing only ever moves within the caller's own items.
    listing = user.http.get("/v1/memories", params={"limit": 1}).json()
    stolen = other_user.http.get("/v1/memories", params={"cursor": listing["next_cursor"]})
    assert stolen.status_code == 200 and stolen.json()["items"] == []
    garbage = user.http.get("/v1/memories", params={"cursor": "not-a-cursor"})
    assert garbage.status_code == 400
    assert garbage.json()["error"] == "bad_request"


def test_patch_with_versions_and_delete(cloud: object, user: User) -> None:
    memory = create(user, "first draft")
    cloud.drain(timeout=30)  # type: ignore[attr-defined]  (enrichment moves the version on)
    path = f"/v1/memories/{memory['id']}"
    stale = user.http.patch(path, json={"tags": ["a"]}, headers={"If-Match": "999"})
    assert stale.status_code == 412
    version = user.http.get(path).json()["version"]
    patched = user.http.patch(
        path, json={"content": "second draft"}, headers={"If-Match": str(version)}
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["version"] == version + 1 and body["content"] == "second draft"
    assert body["status"] == "pending" and body["job_id"] != memory["job_id"]
    assert user.http.delete(path).status_code == 204
    assert user.http.get(path).status_code == 404
    assert user.http.delete(path).status_code == 404


def test_secrets_are_masked_in_stored_content(user: User) -> None:
    memory = create(user, "my key is sk-ant-api03-" + "a" * 40 + " keep it safe")
    assert "sk-ant-api03" not in memory["content"]
    assert memory["secrets_found"]


def test_compat_path_checks_user_id(user: User) -> None:
    ok = user.http.post("/api/memories", json={"content": "old client", "user_id": user.user_id})
    assert ok.status_code == 201
    wrong = user.http.post("/api/memories", json={"content": "x", "user_id": "someone-else"})
    assert wrong.status_code == 403
    assert wrong.json()["detail"] == "User ID mismatch"


def test_health_needs_no_auth(cloud: object) -> None:
    response = httpx.get(f"{cloud.base_url}/v1/health")  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert response.json()["services"]["table"] == "ok"
    assert response.json()["services"]["storage"] == STORAGE_BACKEND
