"""Bad input at the edge, through the local cloud: every class answers a clean 4xx with
`{"error", "detail", "request_id"}` and the field it is about, or is stored and reads back
intact. The classes: dates (offsets, before 1970, overflow), sizes as stored, metadata depth,
unpaired surrogates, strict integers and booleans, bodies without a Content-Length."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import User


def refused(response: httpx.Response, status: int = 422, field: str | None = None) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"}, body
    assert body["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert field in json.dumps(body["detail"]), body["detail"]
    return body


def raw_post(user: User, path: str, raw_json: str) -> httpx.Response:
    """Sends JSON text as written (json.dumps would refuse a lone surrogate)."""
    return user.http.post(path, content=raw_json, headers={"content-type": "application/json"})


def create(user: User, **body: Any) -> dict[str, Any]:
    response = user.http.post("/v1/memories", json={"content": "a memory", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


# ------------------------------------------------------------------------------ dates
BAD_MOMENTS = [
    pytest.param("9999-12-31T23:59:59-01:00", id="overflows-to-utc"),
    pytest.param("0001-01-01T00:00:00+01:00", id="underflows-to-utc"),
    pytest.param("1969-12-31T23:59:59Z", id="before-1970"),
    pytest.param("1900-01-01T00:00:00+05:00", id="long-before-1970"),
    pytest.param("9999-12-31T00:00:00Z", id="past-the-range"),
    pytest.param("2024-01-01T00:00:00", id="no-time-zone"),
    pytest.param(1_700_000_000, id="epoch-number"),
]


@pytest.mark.parametrize("moment", BAD_MOMENTS)
def test_bad_dates_are_refused_on_every_route(user: User, moment: Any) -> None:
    memory_id = create(user)["id"]
    refused(
        user.http.post("/v1/memories", json={"content": "x", "occurred_at": moment}),
        field="occurred_at",
    )
    refused(
        user.http.post("/api/memories", json={"content": "x", "occurred_at": moment}),
        field="occurred_at",
    )
    refused(
        user.http.patch(f"/v1/memories/{memory_id}", json={"occurred_at": moment}),
        field="occurred_at",
    )
    for name in ("since", "until"):
        refused(
            user.http.post("/v1/search", json={"query": "memory", "filters": {name: moment}}),
            field=name,
        )
        if isinstance(moment, str):
            refused(user.http.get("/v1/memories", params={name: moment}), field=name)


@pytest.mark.parametrize(
    ("moment", "stored"),
    [
        ("1970-01-01T00:30:00+01:00", None),  # before 1970 in its zone, not in UTC
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("9999-12-29T23:00:00-01:00", "9999-12-30T00:00:00Z"),
        ("2024-02-29T12:00:00+05:30", "2024-02-29T06:30:00Z"),
    ],
)
def test_dates_at_the_edges_of_the_range(user: User, moment: str, stored: str | None) -> None:
    if stored is None:
        refused(user.http.post("/v1/memories", json={"content": "x", "occurred_at": moment}))
        return
    made = create(user, occurred_at=moment)
    assert made["occurred_at"] == stored
    assert user.http.get(f"/v1/memories/{made['id']}").json()["occurred_at"] == stored
    listed = user.http.get("/v1/memories", params={"since": moment, "until": moment})
    assert listed.status_code == 200, listed.text
    found = user.http.post("/v1/search", json={"query": "memory", "filters": {"since": moment}})
    assert found.status_code == 200, found.text


# ------------------------------------------------------------------------------ sizes
def test_content_is_measured_as_stored(user: User) -> None:
    # 20,000 control characters: 20 KB in the request, 120 KB escaped in the stored record
    body = refused(user.http.post("/v1/memories", json={"content": "\x01" * 20_000}))
    assert body["detail"][0]["loc"] == ["body", "content"]
    assert "as stored" in body["detail"][0]["msg"]
    for path, payload in (
        ("/v1/captures", {"role": "prompt", "provider": "p", "conversation_id": "c"}),
        ("/v1/shares", {}),
    ):
        key = "text"
        refused(user.http.post(path, json={**payload, key: "\x01" * 20_000}), field=key)
    refused(
        user.http.post("/save-prompt", json={"user_id": user.user_id, "prompt": "\x02" * 20_000}),
        field="prompt",
    )


def test_control_characters_under_the_limit_read_back_intact(user: User) -> None:
    content = "start\x01\x02\x1f\x7f" * 3_000 + "end"  # 27 KB sent, ~75 KB stored
    made = create(user, content=content)
    assert user.http.get(f"/v1/memories/{made['id']}").json()["content"] == content


def test_metadata_depth_and_size(user: User) -> None:
    def nested(levels: int) -> dict[str, Any]:
        node: dict[str, Any] = {"leaf": True}
        for _ in range(levels - 1):
            node = {"n": node}
        return node

    made = create(user, metadata=nested(8))
    assert user.http.get(f"/v1/memories/{made['id']}").json()["metadata"] == nested(8)
    refused(
        user.http.post("/v1/memories", json={"content": "x", "metadata": nested(9)}),
        field="metadata",
    )
    refused(
        user.http.patch(f"/v1/memories/{made['id']}", json={"metadata": nested(9)}),
        field="metadata",
    )
    # 3,000 control characters: 3 KB as text, 18 KB as stored JSON (the limit is 16 KB)
    refused(
        user.http.post("/v1/memories", json={"content": "x", "metadata": {"k": "\x03" * 3_000}}),
        field="metadata",
    )


def test_deeply_nested_bodies_are_refused(user: User) -> None:
    deep = '{"content": "x", "metadata": {"a": ' + "[" * 50_000 + "]" * 50_000 + "}}"
    response = raw_post(user, "/v1/memories", deep)
    assert response.status_code in (400, 422), response.text
    refused(response, response.status_code)
    refused(raw_post(user, "/v1/search", '{"query": "x", "filters": ' + "[" * 40 + "]" * 40 + "}"))


# ------------------------------------------------------------------------------ strings
# An unpaired surrogate has no UTF-8 form; no text column keeps U+0000 (Postgres refuses it):
# no backend takes either.
UNPAIRED, NUL = "unpaired surrogate", "U+0000"


@pytest.mark.parametrize(
    ("path", "raw", "why"),
    [
        ("/v1/memories", '{"content": "half a pair \\ud83d here"}', UNPAIRED),
        ("/v1/memories", '{"content": "x", "tags": ["\\udc00"]}', UNPAIRED),
        ("/v1/memories", '{"content": "x", "metadata": {"\\ud800": 1}}', UNPAIRED),
        ("/api/memories", '{"content": "x", "source": {"title": "\\udfff"}}', UNPAIRED),
        (
            "/v1/captures",
            '{"role":"prompt","provider":"p","conversation_id":"\\ud800","text":"x"}',
            UNPAIRED,
        ),
        ("/v1/search", '{"query": "\\ud800"}', UNPAIRED),
        ("/v1/context", '{"query": "\\ud800"}', UNPAIRED),
        ("/v1/chat", '{"message": "\\ud800"}', UNPAIRED),
        ("/v1/shares", '{"text": "\\ud800"}', UNPAIRED),
        ("/save-prompt", '{"user_id": "u", "prompt": "\\ud800"}', UNPAIRED),
        (
            "/v1/uploads",
            '{"filename": "\\ud800.txt", "content_type": "text/plain", "size": 3}',
            UNPAIRED,
        ),
        ("/v1/api-keys", '{"name": "\\ud800"}', UNPAIRED),
        ("/v1/memories", '{"content": "a NUL \\u0000 here"}', NUL),
        ("/v1/memories", '{"content": "x", "metadata": {"k\\u0000": 1}}', NUL),
        ("/v1/memories", '{"content": "x", "source": {"url": "https://a.example/\\u0000"}}', NUL),
        ("/v1/search", '{"query": "\\u0000"}', NUL),
        (
            "/v1/captures",
            '{"role":"prompt","provider":"p","conversation_id":"c","text":"\\u0000"}',
            NUL,
        ),
    ],
)
def test_unstorable_strings_are_refused(user: User, path: str, raw: str, why: str) -> None:
    body = refused(raw_post(user, path, raw))
    assert why in json.dumps(body["detail"])


@pytest.mark.parametrize("param", ["provider", "tag", "cursor"])
def test_nul_characters_in_a_list_query_are_refused(user: User, param: str) -> None:
    body = refused(user.http.get("/v1/memories", params={param: "a\x00b"}))
    assert NUL in json.dumps(body["detail"])


def test_paired_surrogates_are_one_character(user: User) -> None:
    response = raw_post(user, "/v1/memories", '{"content": "a smile \\ud83d\\ude00"}')
    assert response.status_code == 201, response.text
    assert response.json()["content"] == "a smile \U0001f600"


# ------------------------------------------------------------------------------ numbers
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/search", {"query": "x", "limit": True}, "limit"),
        ("/v1/search", {"query": "x", "limit": "5"}, "limit"),
        ("/v1/search", {"query": "x", "limit": 2.5}, "limit"),
        ("/v1/context", {"query": "x", "max_tokens": False}, "max_tokens"),
        ("/v1/uploads", {"filename": "a.txt", "content_type": "text/plain", "size": True}, "size"),
        ("/v1/memories", {"content": 5}, "content"),
        ("/v1/memories", {"content": "x", "tags": "one"}, "tags"),
    ],
)
def test_strict_numbers_booleans_and_strings(
    user: User, path: str, body: dict[str, Any], field: str
) -> None:
    refused(user.http.post(path, json=body), field=field)


def test_list_limit_must_be_an_integer(user: User) -> None:
    for value in ("true", "1.5", "0", "101"):
        refused(user.http.get("/v1/memories", params={"limit": value}), field="limit")


# ------------------------------------------------------------------------------ bodies
def _chunks(total: int, size: int = 65_536) -> Iterator[bytes]:
    yield b'{"content": "'
    sent = 0
    while sent < total:
        yield b"y" * min(size, total - sent)
        sent += size
    yield b'"}'


def test_a_chunked_body_over_the_limit_is_refused(user: User) -> None:
    response = user.http.post(
        "/v1/memories", content=_chunks(2_000_000), headers={"content-type": "application/json"}
    )
    body = refused(response, 413)
    assert body["error"] == "payload_too_large"


def test_a_chunked_body_under_the_limit_is_read(user: User) -> None:
    response = user.http.post(
        "/v1/memories", content=_chunks(50_000), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["content"] == "y" * 50_000
