"""Every sample event in events/ runs through its function the way `make invoke FN=<fn>
EVENT=events/<fn>_<what>.json` runs it (`infra.devtools.event_with_token`, then the local
cloud's `invoke` of the function named by the file's prefix), and its result is checked.

The events play one story for the dev user, in order: the note that memories_create saves is
what memories_list lists and what retrieval_search and the MCP search find. The SQS samples
name a memory, job and capture that do not exist: a worker acknowledges such a message (it is
not retried), so their result is an empty `batchItemFailures`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.devtools import DEV_USER, event_with_token

EVENTS = Path(__file__).resolve().parents[2] / "events"

Check = Callable[[Any, dict[str, Any]], None]


def _http(status: int) -> Callable[[Any], dict[str, Any]]:
    def body(result: Any) -> dict[str, Any]:
        assert result["statusCode"] == status, result
        assert "application/json" in result["headers"]["content-type"]
        parsed: dict[str, Any] = json.loads(result["body"])
        return parsed

    return body


def _health(result: Any, _: dict[str, Any]) -> None:
    body = _http(200)(result)
    assert body["status"] == "healthy"
    assert body["services"]["table"] == "ok"


def _account(result: Any, _: dict[str, Any]) -> None:
    body = _http(200)(result)
    assert body["user_id"] == DEV_USER
    assert set(body["usage"]) >= {"memories", "bytes", "writes_today"}
    assert body["limits"]["max_memories"] > 0


def _create(result: Any, story: dict[str, Any]) -> None:
    body = _http(201)(result)
    assert body["content"] == "The staging database is on port 6543"
    assert body["tags"] == ["infra"] and body["status"] == "pending" and body["job_id"]
    story["memory_id"] = body["id"]


def _list(result: Any, story: dict[str, Any]) -> None:
    body = _http(200)(result)
    assert story["memory_id"] in [item["id"] for item in body["items"]]
    assert len(body["items"]) <= 5  # the event's ?limit=5


def _search(result: Any, story: dict[str, Any]) -> None:
    body = _http(200)(result)
    best = body["items"][0]
    assert best["memory"]["id"] == story["memory_id"]
    assert "<mark>staging</mark>" in best["highlights"][0]


def _mcp(result: Any, story: dict[str, Any]) -> None:
    body = _http(200)(result)
    assert body["jsonrpc"] == "2.0" and body["id"] == 1
    assert not body["result"].get("isError")
    found = json.loads(body["result"]["content"][0]["text"])["results"]
    assert story["memory_id"] in [hit["id"] for hit in found]


def _prompt(result: Any, _: dict[str, Any]) -> None:
    body = _http(202)(result)
    assert body["status"] == "pending" and body["capture_id"] and not body["paired"]


def _share(result: Any, _: dict[str, Any]) -> None:
    body = _http(202)(result)
    assert body["memory_id"] and body["status_url"] == f"/v1/jobs/{body['job_id']}"


def _upload(result: Any, _: dict[str, Any]) -> None:
    body = _http(201)(result)
    assert body["url"].startswith("http://127.0.0.1:")
    assert body["fields"]["key"].startswith(f"uploads/{DEV_USER}/{body['upload_id']}/")
    assert body["fields"]["Content-Type"] == "application/pdf"


def _admin(result: Any, _: dict[str, Any]) -> None:
    body = _http(200)(result)
    assert body["items"]["memories"] >= 2  # the note and the shared page so far
    assert {"analyze", "embed", "tasks"} <= set(body["queues"])


def _websocket(result: Any, _: dict[str, Any]) -> None:
    assert result["statusCode"] == 200, result


def _acknowledged(result: Any, _: dict[str, Any]) -> None:
    assert result == {"batchItemFailures": []}


def _cleanup(result: Any, story: dict[str, Any]) -> None:
    assert result["errors"] == 0
    assert set(result["deleted"]) >= {"jobs", "connections", "uploads"}
    # what the cloud holds (other tests on this session's cloud leave poison in DLQs)
    visible = {name: depth["visible"] for name, depth in result["dlqs"].items()}
    assert visible == story["dlqs_visible"], result["dlqs"]


# In the order the story needs; every file in events/ must be here.
CHECKS: dict[str, Check] = {
    "health.json": _health,
    "account_me.json": _account,
    "memories_create.json": _create,
    "memories_list.json": _list,
    "retrieval_search.json": _search,
    "mcp_tools_call.json": _mcp,
    "capture_prompt.json": _prompt,
    "capture_share.json": _share,
    "uploads_create.json": _upload,
    "admin_stats.json": _admin,
    "websocket_connect.json": _websocket,
    "analyze_sqs.json": _acknowledged,
    "embed_sqs.json": _acknowledged,
    "tasks_sqs.json": _acknowledged,
    "extract_s3_sqs.json": _acknowledged,
    "cleanup_schedule.json": _cleanup,
}


def test_every_sample_event_runs_through_its_function(cloud: Any) -> None:
    assert sorted(CHECKS) == sorted(p.name for p in EVENTS.glob("*.json"))
    story: dict[str, Any] = {}
    for name, check in CHECKS.items():
        text = event_with_token(str(EVENTS / name))
        assert "DEV_TOKEN" not in text, name
        function = name.split("_")[0].removesuffix(".json")
        if check is _cleanup:
            dlqs = [queue for queue in cloud.stack.queues if queue.endswith("DLQ")]
            story["dlqs_visible"] = {
                cloud.queue_url(queue).rsplit("/", 1)[-1]: counts["visible"]
                for queue, counts in cloud.queue_counts(dlqs).items()
            }
        result = cloud.invoke(function, json.loads(text))
        try:
            check(result, story)
        except (AssertionError, KeyError) as exc:
            raise AssertionError(f"{name} → {function}: {exc!r}\n{result}") from exc
