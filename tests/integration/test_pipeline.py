"""The enrichment pipeline end to end in the local cloud, with the offline providers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from websockets.sync.client import connect

from tests.conftest import STORAGE_BACKEND, User, postgres_rows

PAGE = b"""<!doctype html><html><head>
<title>Tide tables | Harbour Office</title>
<meta property="og:title" content="Understanding tide tables">
<meta name="description" content="How to read tide tables before sailing out of the harbour.">
<link rel="canonical" href="https://harbour.example/tides">
</head><body>
<nav>Home | About | Contact</nav>
<article><h1>Understanding tide tables</h1>
<p>Tide tables list the times and heights of high and low water for each day. Sailors read
them before leaving the harbour, because the channel is shallow at low water.</p>
<p>Spring tides bring the largest range between high and low water, shortly after the full
and new moon. Neap tides have the smallest range.</p>
<p>Always check the tide table together with the weather forecast and the wind direction.</p>
</article>
<footer>Copyright Harbour Office. Cookie settings.</footer>
</body></html>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        return


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tides?utm_source=x"
    server.shutdown()
    server.server_close()


@pytest.fixture
def page_url() -> Iterator[str]:
    yield from _serve(_Page)


class _HeldPage(_Page):
    """The page, answered only once the test lets it go (or after 10 s)."""

    release = threading.Event()

    def do_GET(self) -> None:
        self.release.wait(timeout=10)
        super().do_GET()


@pytest.fixture
def held_page_url() -> Iterator[str]:
    _HeldPage.release.clear()
    yield from _serve(_HeldPage)
    _HeldPage.release.set()


def wait_for_job(user: User, job_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = user.http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_shared_url_is_enriched_and_progress_is_pushed(
    cloud: object, user: User, page_url: str
) -> None:
    ws_url = f"{cloud.ws_url}?token={user.token}"  # type: ignore[attr-defined]
    with connect(ws_url, open_timeout=5) as socket:
        accepted = user.http.post("/v1/shares", json={"url": page_url, "text": "for sailing"})
        assert accepted.status_code == 202, accepted.text
        share = accepted.json()
        assert share["status_url"] == f"/v1/jobs/{share['job_id']}"
        stages = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not stages or stages[-1] != "completed"):
            message = json.loads(socket.recv(timeout=deadline - time.monotonic()))
            assert message["type"] == "job.progress"
            assert message["job_id"] == share["job_id"]
            stages.append(message["status"])
    assert stages == ["analyzing", "embedding", "completed"]
    job = wait_for_job(user, share["job_id"])
    assert job["progress"] == 1.0 and job["memory_id"] == share["memory_id"]

    memory = user.http.get(f"/v1/memories/{share['memory_id']}").json()
    assert memory["status"] == "ready"
    assert memory["content"].startswith("for sailing")
    assert "Spring tides" in memory["content"]
    assert "Cookie settings" not in memory["content"]
    assert memory["source"]["canonical_url"] == "https://harbour.example/tides"
    assert memory["source"]["title"] == "Understanding tide tables"
    analysis = memory["analysis"]
    assert analysis["title"] and analysis["description"]
    assert analysis["tags"] and analysis["key_topics"]
    assert analysis["category"] and analysis["sentiment"]
    assert analysis["model"] == "offline-v1"
    vectors = _vectors_of(cloud, user.user_id)
    assert share["memory_id"] in vectors


def test_a_job_reads_analyzing_while_the_step_waits_on_the_network(
    cloud: object, user: User, held_page_url: str
) -> None:
    """A stage that waits (here on fetching the shared page) is saved on its own, so GET
    /v1/jobs/{id} shows it while it lasts; a local analysis's start is saved with its result."""
    share = user.http.post("/v1/shares", json={"url": held_page_url}).json()
    deadline = time.monotonic() + 20
    seen = []
    while time.monotonic() < deadline and "analyzing" not in seen:
        seen.append(user.http.get(f"/v1/jobs/{share['job_id']}").json()["status"])
        time.sleep(0.05)
    _HeldPage.release.set()
    assert seen[-1] == "analyzing", seen
    job = wait_for_job(user, share["job_id"])
    assert job["status"] == "completed"

    note = user.http.post("/v1/memories", json={"content": "a note analyzed locally"}).json()
    done = wait_for_job(user, note["job_id"])
    assert done["status"] == "completed"
    times = done["stage_times"]
    assert times["analyzing"] <= times["embedding"] <= times["completed"]


def _vectors_of(cloud: object, user_id: str) -> set[str]:
    if STORAGE_BACKEND == "supabase":
        sql = "select id from memlayer.memories where user_id = $1 and embedding is not null"
        return {row["id"] for row in postgres_rows(sql, user_id)}
    ddb = cloud.boto3_client("dynamodb")  # type: ignore[attr-defined]
    items = ddb.query(
        TableName=cloud.table_name("Table"),  # type: ignore[attr-defined]
        KeyConditionExpression="PK = :pk AND begins_with(SK, :v)",
        ExpressionAttributeValues={":pk": {"S": f"USER#{user_id}"}, ":v": {"S": "VEC#"}},
    )["Items"]
    return {item["SK"]["S"][4:] for item in items}


def test_capture_pairs_prompt_and_response_into_one_exchange(cloud: object, user: User) -> None:
    turn = {"provider": "chatgpt", "conversation_id": "c-1"}
    prompt = user.http.post("/v1/captures", json={**turn, "role": "prompt", "text": "What is RRF?"})
    assert prompt.status_code == 202 and prompt.json()["status"] == "pending"
    reply = user.http.post(
        "/v1/captures", json={**turn, "role": "response", "text": "Reciprocal rank fusion."}
    )
    assert reply.status_code == 202
    assert reply.json()["paired"] is True
    cloud.drain(timeout=20)  # type: ignore[attr-defined]
    items = user.http.get("/v1/memories").json()["items"]
    assert len(items) == 1
    assert items[0]["kind"] == "exchange"
    assert items[0]["content"] == "User: What is RRF?\n\nAssistant: Reciprocal rank fusion."
    assert items[0]["status"] == "ready"


def test_an_unpaired_prompt_becomes_a_memory_after_the_window(cloud: object, user: User) -> None:
    turn = {"provider": "claude", "conversation_id": "c-2"}
    user.http.post("/v1/captures", json={**turn, "role": "prompt", "text": "first question"})
    user.http.post("/v1/captures", json={**turn, "role": "prompt", "text": "second question"})
    cloud.drain(timeout=20)  # type: ignore[attr-defined]  (the flush task is delayed 2 s)
    items = user.http.get("/v1/memories").json()["items"]
    assert sorted(item["content"] for item in items) == ["first question", "second question"]
    assert {item["kind"] for item in items} == {"prompt"}


def test_compat_paths(cloud: object, user: User) -> None:
    saved = user.http.post(
        "/save-prompt", json={"user_id": user.user_id, "prompt": "hi", "provider": "gemini"}
    )
    assert saved.status_code == 201
    mismatch = user.http.post(
        "/save-response", json={"user_id": "not-me", "response": "x", "provider": "gemini"}
    )
    assert mismatch.status_code == 403
    assert mismatch.json()["detail"] == "User ID mismatch"
    shared = user.http.post("/api/v1/share", json={"text": "a shared thought"}).json()
    cloud.drain(timeout=20)  # type: ignore[attr-defined]
    status = user.http.get(f"/api/v1/share/status/{shared['processing_id']}").json()
    assert status["status"] == "completed" and status["progress"] == 1.0
    assert status["result_id"] == shared["result_id"]


def test_share_needs_something_and_a_real_url(user: User) -> None:
    assert user.http.post("/v1/shares", json={}).status_code == 422
    bad = user.http.post("/v1/shares", json={"url": "file:///etc/passwd"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "url"]


def test_jobs_of_another_user_are_404(user: User, other_user: User) -> None:
    share = user.http.post("/v1/shares", json={"text": "mine"}).json()
    assert other_user.http.get(f"/v1/jobs/{share['job_id']}").status_code == 404
