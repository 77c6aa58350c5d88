"""Uploads through the local cloud, as deployed: POST /v1/uploads → a presigned S3 form →
the browser's multipart POST straight to the bucket (moto) → S3's ObjectCreated notification
→ the uploads queue → the extract worker → a `file` memory (or a failed upload with a reason)
→ GET /v1/uploads/{id}. moto does not enforce the form's policy, so the worker's own checks
(size, type, magic bytes, decoding) are what these tests exercise."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from memlayer.ids import new_id, utcnow
from tests.conftest import User


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def bucket(cloud: Any) -> str:
    return str(cloud.bucket_name("UploadsBucket"))


def request_ticket(user: User, filename: str, content_type: str, size: int) -> dict[str, Any]:
    response = user.http.post(
        "/v1/uploads", json={"filename": filename, "content_type": content_type, "size": size}
    )
    assert response.status_code == 201, response.text
    return response.json()


def post_form(ticket: dict[str, Any], data: bytes, content_type: str | None = None) -> None:
    """What the extension does with a ticket: the fields, then the file as the last part."""
    fields = dict(ticket["fields"])
    if content_type is not None:
        fields["Content-Type"] = content_type
    response = httpx.post(ticket["url"], data=fields, files={"file": ("blob", data)})
    assert response.status_code in (200, 201, 204), response.text


def wait_for_upload(user: User, upload_id: str, timeout: float = 30) -> dict[str, Any]:
    """Polls GET /v1/uploads/{id} until the extract worker is done with it (enrichment of
    the new memory may still be running)."""
    deadline = time.monotonic() + timeout
    while True:
        response = user.http.get(f"/v1/uploads/{upload_id}")
        assert response.status_code == 200, response.text
        status = response.json()
        if status["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return dict(status)
        time.sleep(0.05)


def upload(user: User, filename: str, content_type: str, data: bytes) -> dict[str, Any]:
    """Ticket → form POST → S3 notification → extract worker → the upload's final status."""
    ticket = request_ticket(user, filename, content_type, max(1, len(data)))
    post_form(ticket, data)
    return wait_for_upload(user, ticket["upload_id"])


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF with `text` in Helvetica (the xref offsets are exact)."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def objects_under(cloud: Any, prefix: str) -> list[str]:
    listing = cloud.boto3_client("s3").list_objects_v2(Bucket=bucket(cloud), Prefix=prefix)
    return [obj["Key"] for obj in listing.get("Contents", [])]


def file_memories(user: User) -> list[dict[str, Any]]:
    items = user.http.get("/v1/memories", params={"kind": "file"}).json()["items"]
    return list(items)


def s3_notification(bucket_name: str, key: str, size: int) -> str:
    from urllib.parse import quote_plus

    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Post",
                    "s3": {
                        "bucket": {"name": bucket_name},
                        "object": {"key": quote_plus(key, safe="/"), "size": size},
                    },
                }
            ]
        }
    )


def sqs_event(cloud: Any, bodies: dict[str, str]) -> dict[str, Any]:
    """SQS messages as Lambda's event source mapping hands them to a function."""
    now = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"handle-{message_id}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
                    "ApproximateFirstReceiveTimestamp": now,
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": cloud.queue_arn("UploadsQueue"),
                "awsRegion": "us-east-1",
            }
            for message_id, body in bodies.items()
        ]
    }


# ---------------------------------------------------------------------------- tickets


def test_ticket_and_status_are_private(user: User, other_user: User) -> None:
    response = user.http.post(
        "/v1/uploads",
        json={"filename": "Notes 2024.md", "content_type": "text/markdown", "size": 1234},
    )
    assert response.status_code == 201, response.text
    ticket = response.json()
    assert set(ticket) >= {"upload_id", "url", "fields", "expires_at", "max_bytes"}
    assert ticket["method"] == "POST"
    assert ticket["fields"]["Content-Type"] == "text/markdown"
    assert ticket["fields"]["key"] == f"uploads/{user.user_id}/{ticket['upload_id']}/Notes_2024.md"
    assert response.headers["location"] == f"/v1/uploads/{ticket['upload_id']}"

    mine = user.http.get(f"/v1/uploads/{ticket['upload_id']}")
    assert mine.status_code == 200
    assert mine.json()["status"] == "awaiting"
    assert mine.json()["filename"] == "Notes 2024.md"
    assert mine.json()["size"] == 1234

    theirs = other_user.http.get(f"/v1/uploads/{ticket['upload_id']}")
    assert theirs.status_code == 404
    assert theirs.json()["error"] == "not_found"
    assert user.http.get("/v1/uploads/not-an-id").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (
            {"filename": "a.exe", "content_type": "application/x-msdownload", "size": 10},
            422,
            "content_type",
        ),
        ({"filename": "a.txt", "content_type": "text/plain", "size": 0}, 422, "size"),
        ({"filename": "a\x00.txt", "content_type": "text/plain", "size": 3}, 422, "filename"),
        ({"filename": "..", "content_type": "text/plain", "size": 3}, 422, "filename"),
        ({"filename": "big.pdf", "content_type": "application/pdf", "size": 10**9}, 413, None),
    ],
)
def test_ticket_refuses_bad_declarations(
    user: User, body: dict[str, Any], status: int, field: str | None
) -> None:
    response = user.http.post("/v1/uploads", json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["request_id"]
    if field is not None:
        assert payload["error"] == "validation_error"
        # the field's own check, or the body-wide one (a NUL), whose message names it
        named = [
            err
            for err in payload["detail"]
            if err["loc"][-1] == field or f" {field}:" in err["msg"]
        ]
        assert named, payload["detail"]
    else:
        assert payload["error"] == "payload_too_large"


def test_no_ticket_when_the_memory_could_not_be_written(user: User) -> None:
    from memlayer.storage import get_store

    run(get_store().set_limits(user.user_id, {"daily_writes": 1}))
    assert (
        user.http.post("/v1/memories", json={"content": "the day's one write"}).status_code == 201
    )
    response = user.http.post(
        "/v1/uploads", json={"filename": "a.txt", "content_type": "text/plain", "size": 3}
    )
    assert response.status_code == 429
    assert response.json()["error"] == "quota_exceeded"
    assert int(response.headers["retry-after"]) > 0


def test_content_type_is_normalized(user: User) -> None:
    ticket = request_ticket(user, "README", "text/x-markdown; charset=utf-8", 5)
    assert ticket["fields"]["Content-Type"] == "text/markdown"


# ---------------------------------------------------------------------------- files


def test_text_file_becomes_a_file_memory(cloud: Any, user: User) -> None:
    body = b"Meeting notes\n\nWe chose DynamoDB for the single-table design.\n"
    status = upload(user, "my notes+ideas.txt", "text/plain", body)
    assert status["status"] == "completed", status
    assert status.get("error") is None
    memory = user.http.get(f"/v1/memories/{status['memory_id']}").json()
    assert memory["kind"] == "file"
    assert "single-table design" in memory["content"]
    assert memory["source"]["title"] == "my notes+ideas.txt"
    assert memory["metadata"]["filename"] == "my notes+ideas.txt"
    assert memory["metadata"]["content_type"] == "text/plain"
    assert memory["metadata"]["size"] == len(body)
    assert memory["metadata"]["upload_id"] == status["upload_id"]
    cloud.drain(timeout=30)
    memory = user.http.get(f"/v1/memories/{status['memory_id']}").json()
    assert memory["status"] == "ready"  # enriched like any other memory
    assert memory["analysis"] is not None


def test_redelivered_notification_changes_nothing(cloud: Any, user: User) -> None:
    status = upload(user, "once.txt", "text/plain", b"hello world")
    assert status["status"] == "completed"
    key = f"uploads/{user.user_id}/{status['upload_id']}/once.txt"
    event = sqs_event(cloud, {"again": s3_notification(bucket(cloud), key, 11)})
    assert cloud.invoke("ExtractFunction", event) == {"batchItemFailures": []}
    again = user.http.get(f"/v1/uploads/{status['upload_id']}").json()
    assert again == status
    assert len(file_memories(user)) == 1


def test_pdf_text_is_extracted(cloud: Any, user: User) -> None:
    pdf = make_pdf("Quarterly revenue grew by 42 percent")
    status = upload(user, "report.pdf", "application/pdf", pdf)
    assert status["status"] == "completed", status
    memory = user.http.get(f"/v1/memories/{status['memory_id']}").json()
    assert "Quarterly revenue grew by 42 percent" in memory["content"]
    assert memory["metadata"]["pages"] == 1
    assert memory["metadata"]["content_type"] == "application/pdf"
    cloud.drain(timeout=30)
    found = user.http.post("/v1/search", json={"query": "quarterly revenue growth"}).json()
    assert found["items"][0]["memory"]["id"] == status["memory_id"]  # searchable


def test_html_text_is_extracted(cloud: Any, user: User) -> None:
    paragraph = "Serverless memory layers keep every capture durable before enrichment. " * 4
    html = (
        "<!doctype html><html><head><title>Saved page</title></head><body>"
        f"<nav>Home | About</nav><article><h1>Durability</h1><p>{paragraph}</p>"
        f"<p>{paragraph}</p></article></body></html>"
    ).encode()
    status = upload(user, "page.html", "text/html", html)
    assert status["status"] == "completed", status
    memory = user.http.get(f"/v1/memories/{status['memory_id']}").json()
    assert "keep every capture durable" in memory["content"]
    assert "<p>" not in memory["content"]
    assert memory["metadata"]["title"] == "Saved page"


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "reason"),
    [
        ("fake.pdf", "application/pdf", b"just some text, not a PDF", "declared application/pdf"),
        ("empty.txt", "text/plain", b"", "the file is empty"),
    ],
)
def test_bad_files_fail_with_a_reason(
    cloud: Any, user: User, filename: str, content_type: str, data: bytes, reason: str
) -> None:
    status = upload(user, filename, content_type, data)
    assert status["status"] == "failed"
    assert reason in status["error"]
    assert status.get("memory_id") is None
    assert file_memories(user) == []
    assert objects_under(cloud, f"uploads/{user.user_id}/{status['upload_id']}/") == []


@pytest.mark.parametrize(
    ("content_type", "data", "reason"),
    [
        ("text/plain", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "is a PNG image"),
        ("text/markdown", b"PK\x03\x04" + b"\x00" * 64, "is a ZIP archive"),
        ("text/markdown", b"abc\x00\x01\x02def" * 20, "binary"),
        ("text/plain", bytes(range(1, 32)) * 8, "binary"),
        ("text/html", b"no markup here at all", "no HTML markup"),
        ("text/html", b"<html><body><script>var x = 1;</script></body></html>", "no readable"),
        ("text/plain", b"   \n\n  \t ", "no text"),
        ("application/pdf", b"\x89PNG\r\n\x1a\n", "is a PNG image"),
        ("application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 4, "PDF"),
        ("application/pdf", make_pdf(""), "no extractable text"),
    ],
)
def test_what_a_file_claims_is_checked(content_type: str, data: bytes, reason: str) -> None:
    from memlayer.content import files

    with pytest.raises(files.ExtractionFailed) as failed:
        run(files.extract(data, content_type))
    assert reason in failed.value.reason


def test_long_text_is_cut_to_the_memory_limit() -> None:
    from memlayer.content import files
    from memlayer.services import uploads

    extracted = run(files.extract(("word " * 50_000).encode(), "text/markdown"))
    text, truncated = uploads._fit(extracted.text, 100_000)
    assert truncated and len(text.encode()) <= 100_000


def test_object_sent_with_another_type_fails(cloud: Any, user: User) -> None:
    """moto does not enforce the policy's Content-Type condition; the worker checks again."""
    ticket = request_ticket(user, "notes.txt", "text/plain", 5)
    post_form(ticket, b"hello", content_type="text/html")
    status = wait_for_upload(user, ticket["upload_id"])
    assert status["status"] == "failed"
    assert "sent as text/html" in status["error"]


def test_an_object_never_reaches_another_users_upload(
    cloud: Any, user: User, other_user: User
) -> None:
    from memlayer.services import uploads

    ticket = request_ticket(user, "secret.txt", "text/plain", 5)
    forged = f"uploads/{other_user.user_id}/{ticket['upload_id']}/secret.txt"
    s3 = cloud.boto3_client("s3")
    s3.put_object(Bucket=bucket(cloud), Key=forged, Body=b"hello", ContentType="text/plain")
    renamed = f"uploads/{user.user_id}/{ticket['upload_id']}/renamed.txt"
    s3.put_object(Bucket=bucket(cloud), Key=renamed, Body=b"hello", ContentType="text/plain")
    cloud.drain(timeout=30)  # the worker saw both notifications and ignored them
    assert user.http.get(f"/v1/uploads/{ticket['upload_id']}").json()["status"] == "awaiting"
    assert other_user.http.get(f"/v1/uploads/{ticket['upload_id']}").status_code == 404
    assert file_memories(user) == [] and file_memories(other_user) == []
    assert run(uploads.handle_object_created(bucket(cloud), forged, 5)) is None
    assert run(uploads.handle_object_created("another-bucket", ticket["fields"]["key"], 5)) is None
    assert run(uploads.handle_object_created(bucket(cloud), "exports/x/y.zip", 5)) is None


def test_an_upload_in_progress_is_not_taken_twice(cloud: Any, user: User) -> None:
    from memlayer.services import uploads

    ticket = request_ticket(user, "a.txt", "text/plain", 5)
    store = uploads.uploads_store()
    record = run(store.get_upload(user.user_id, ticket["upload_id"]))
    run(
        store.update_upload(
            record.model_copy(update={"status": "extracting", "updated_at": utcnow()}),
            expected_version=record.version,
        )
    )
    with pytest.raises(uploads.UploadBusy):
        run(uploads.handle_object_created(bucket(cloud), ticket["fields"]["key"], 5))


def test_deleting_the_memory_deletes_the_upload(cloud: Any, user: User) -> None:
    status = upload(user, "keep.txt", "text/plain", b"keep me")
    prefix = f"uploads/{user.user_id}/{status['upload_id']}/"
    assert objects_under(cloud, prefix) == [f"{prefix}keep.txt"]
    assert user.http.delete(f"/v1/memories/{status['memory_id']}").status_code == 204
    assert objects_under(cloud, prefix) == []
    assert user.http.get(f"/v1/uploads/{status['upload_id']}").status_code == 404


def test_stuck_uploads_are_listed_for_cleanup(user: User) -> None:
    from datetime import timedelta

    from memlayer.services import uploads

    ticket = request_ticket(user, "stuck.txt", "text/plain", 2)
    store = uploads.uploads_store()
    later = run(store.list_uploads_older_than(utcnow() + timedelta(seconds=1), limit=1000))
    assert ticket["upload_id"] in {u.id for u in later}
    earlier = run(store.list_uploads_older_than(utcnow() - timedelta(hours=1), limit=1000))
    assert ticket["upload_id"] not in {u.id for u in earlier}


# ---------------------------------------------------------------------------- the worker


def test_worker_ignores_test_events_and_fails_only_bad_messages(cloud: Any) -> None:
    test_event = json.dumps(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket(cloud)}
    )
    event = sqs_event(
        cloud,
        {
            "test": test_event,
            "garbage": "not json",
            "empty": json.dumps({"Records": []}),
            "foreign": s3_notification(bucket(cloud), f"uploads/u/{new_id()}/x.txt", 3),
        },
    )
    result = cloud.invoke("ExtractFunction", event)
    assert result == {"batchItemFailures": [{"itemIdentifier": "garbage"}]}


def test_sample_event_is_handled(cloud: Any) -> None:
    from pathlib import Path

    from memlayer.services import uploads

    root = Path(__file__).resolve().parents[2]
    event = json.loads((root / "events/extract_s3_sqs.json").read_text())
    created = uploads.parse_s3_event(event["Records"][0]["body"])
    assert len(created) == 1
    assert " " in created[0].key  # '+' in a notification's key is a space
    assert created[0].size > 0
    # No such upload here: the worker ignores it rather than failing the message.
    assert cloud.invoke("ExtractFunction", event) == {"batchItemFailures": []}


def test_s3_event_keys_are_decoded() -> None:
    from memlayer.services import uploads

    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Post",
                    "s3": {
                        "bucket": {"name": "b"},
                        "object": {"key": "uploads/u%7C1/ID/my+file%2B1.txt", "size": 7},
                    },
                },
                {"eventName": "ObjectRemoved:Delete", "s3": {}},
            ]
        }
    )
    assert uploads.parse_s3_event(body) == [
        uploads.ObjectCreated(bucket="b", key="uploads/u|1/ID/my file+1.txt", size=7)
    ]
    with pytest.raises(ValueError):
        uploads.parse_s3_event('{"Records": [{"eventName": "ObjectCreated:Put"}]}')


def test_text_decoding() -> None:
    from memlayer.content import files

    assert files.decode_text("café".encode("cp1252")) == "café"
    assert files.decode_text("\ufeffhello".encode()) == "hello"
    assert files.decode_text("naïve".encode("utf-16")) == "naïve"
    with pytest.raises(files.ExtractionFailed):
        files.decode_text(b"\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f" * 10)
