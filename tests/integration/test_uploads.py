"""Uploads against moto (a ThreadedMotoServer with template.yaml's table, queues and bucket,
including the bucket's S3 -> SQS notification): tickets over HTTP, real uploads through the
presigned form, the extract worker's handler on the real notification messages."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import httpx
import jwt
import pytest
from moto.server import ThreadedMotoServer

from infra.localcloud.resources import create_resources
from infra.localcloud.stack import build_stack
from memlayer.errors import NotFound
from memlayer.ids import new_id, utcnow

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "test-secret-for-uploads-0123456789abcdef"


# ---------------------------------------------------------------------------- fixtures


def _clear_caches() -> None:
    import memlayer.auth
    import memlayer.aws
    import memlayer.settings
    import memlayer.storage

    memlayer.settings.get_settings.cache_clear()
    memlayer.storage.get_store.cache_clear()
    memlayer.aws.client.cache_clear()
    memlayer.auth._verifier.cache_clear()


class Env:
    def __init__(self, endpoint: str, stack: Any) -> None:
        self.endpoint = endpoint
        self.stack = stack
        self.bucket = stack.resolver.physical_name("UploadsBucket")
        self.uploads_queue = stack.queue_url("UploadsQueue")
        self.tasks_queue = stack.queue_url("TasksQueue")

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    stack = build_stack(ROOT / "template.yaml", aws_endpoint_url=endpoint)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "ENVIRONMENT": "test",
            "SUPABASE_JWT_SECRET": JWT_SECRET,
            "TABLE_NAME": stack.resolver.physical_name("Table"),
            "UPLOADS_BUCKET": stack.resolver.physical_name("UploadsBucket"),
            "ANALYZE_QUEUE_URL": stack.queue_url("AnalyzeQueue"),
            "EMBED_QUEUE_URL": stack.queue_url("EmbedQueue"),
            "TASKS_QUEUE_URL": stack.queue_url("TasksQueue"),
            "RATE_LIMIT_PER_USER_PER_MIN": "0",
            "RATE_LIMIT_PER_IP_PER_MIN": "0",
        }.items():
            mp.setenv(name, value)
        create_resources(stack, boto3.session.Session(), endpoint)
        _clear_caches()
        environment = Env(endpoint, stack)
        _drain(environment)  # S3's test event for the new notification configuration
        yield environment
    _clear_caches()
    server.stop()


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def extract_fn(env: Env) -> ModuleType:
    return _load("extract_function_app", ROOT / "functions/extract/app.py")


@pytest.fixture(scope="module")
def http(env: Env) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    module = _load("uploads_function_app", ROOT / "functions/uploads/app.py")
    with TestClient(module.app) as client:
        yield client


def token(user_id: str) -> dict[str, str]:
    claims = {"sub": user_id, "aud": "authenticated", "exp": int(time.time()) + 600}
    return {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _drain(env: Env) -> list[dict[str, Any]]:
    sqs = env.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=env.uploads_queue, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return messages
        messages.extend(got)
        for message in got:
            sqs.delete_message(QueueUrl=env.uploads_queue, ReceiptHandle=message["ReceiptHandle"])


def sqs_event(env: Env, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """SQS messages as Lambda's event source mapping hands them to the function."""
    arn = env.stack.queue_arn("UploadsQueue")
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m.get("Attributes", {}).get(
                        "ApproximateReceiveCount", "1"
                    ),
                    "SentTimestamp": str(int(time.time() * 1000)),
                    "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
                    "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def ticket_for(user_id: str, filename: str, content_type: str, size: int) -> Any:
    from memlayer.services import uploads

    body = uploads.UploadCreate(filename=filename, content_type=content_type, size=size)
    return run(uploads.create_upload(user_id, body))


def post_form(ticket: Any, data: bytes, content_type: str | None = None) -> None:
    fields = dict(ticket.fields)
    if content_type is not None:
        fields["Content-Type"] = content_type
    resp = httpx.post(ticket.url, data=fields, files={"file": ("blob", data)})
    assert resp.status_code in (200, 201, 204), resp.text


def upload_and_extract(
    env: Env, extract_fn: ModuleType, user_id: str, filename: str, content_type: str, data: bytes
) -> Any:
    """Ticket -> presigned POST -> the notification message -> the extract handler."""
    from memlayer.services import uploads

    ticket = ticket_for(user_id, filename, content_type, max(1, len(data)))
    post_form(ticket, data)
    messages = _drain(env)
    assert messages, "S3 sent no notification"
    result = extract_fn.handler(sqs_event(env, messages), None)
    assert result == {"batchItemFailures": []}
    return run(uploads.get_upload(user_id, ticket.upload_id))


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF with `text` in Helvetica (offsets in the xref are exact)."""
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


def objects_under(env: Env, prefix: str) -> list[str]:
    resp = env.client("s3").list_objects_v2(Bucket=env.bucket, Prefix=prefix)
    return [obj["Key"] for obj in resp.get("Contents", [])]


def file_memories(user_id: str) -> list[Any]:
    from memlayer.storage import get_store

    return [m for m in run(get_store().all_memories(user_id)) if m.kind == "file"]


# ---------------------------------------------------------------------------- HTTP


def test_ticket_over_http_and_status_is_private(env: Env, http: Any) -> None:
    owner, other = f"user-{new_id()}", f"user-{new_id()}"
    resp = http.post(
        "/v1/uploads",
        json={"filename": "Notes 2024.md", "content_type": "text/markdown", "size": 1234},
        headers=token(owner),
    )
    assert resp.status_code == 201, resp.text
    ticket = resp.json()
    assert set(ticket) >= {"upload_id", "url", "fields", "expires_at", "max_bytes"}
    assert ticket["method"] == "POST"
    assert ticket["fields"]["Content-Type"] == "text/markdown"
    assert ticket["fields"]["key"] == f"uploads/{owner}/{ticket['upload_id']}/Notes_2024.md"
    assert resp.headers["location"] == f"/v1/uploads/{ticket['upload_id']}"

    mine = http.get(f"/v1/uploads/{ticket['upload_id']}", headers=token(owner))
    assert mine.status_code == 200
    assert mine.json()["status"] == "awaiting"
    assert mine.json()["filename"] == "Notes 2024.md"
    assert mine.json()["size"] == 1234

    theirs = http.get(f"/v1/uploads/{ticket['upload_id']}", headers=token(other))
    assert theirs.status_code == 404
    assert theirs.json()["error"] == "not_found"
    assert http.get("/v1/uploads/not-an-id", headers=token(owner)).status_code == 404
    assert http.get(f"/v1/uploads/{ticket['upload_id']}").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"filename": "a.exe", "content_type": "application/x-msdownload", "size": 10}, 422, "content_type"),
        ({"filename": "a.txt", "content_type": "text/plain", "size": 0}, 422, "size"),
        ({"filename": "a\x00.txt", "content_type": "text/plain", "size": 3}, 422, "filename"),
        ({"filename": "..", "content_type": "text/plain", "size": 3}, 422, "filename"),
        ({"filename": "big.pdf", "content_type": "application/pdf", "size": 10**9}, 413, None),
    ],
)  # fmt: skip
def test_ticket_refuses_bad_declarations(
    env: Env, http: Any, body: dict[str, Any], status: int, field: str | None
) -> None:
    resp = http.post("/v1/uploads", json=body, headers=token(f"user-{new_id()}"))
    assert resp.status_code == status, resp.text
    payload = resp.json()
    assert payload["request_id"]
    if field is not None:
        assert payload["error"] == "validation_error"
        assert any(err["loc"][-1] == field for err in payload["detail"])
    else:
        assert payload["error"] == "payload_too_large"


def test_content_type_is_normalized(env: Env) -> None:
    ticket = ticket_for(f"user-{new_id()}", "README", "text/x-markdown; charset=utf-8", 5)
    assert ticket.fields["Content-Type"] == "text/markdown"


# ---------------------------------------------------------------------------- uploads


def test_text_file_becomes_a_file_memory(env: Env, extract_fn: ModuleType) -> None:
    from memlayer.storage import get_store

    user = f"user-{new_id()}"
    body = "Meeting notes\n\nWe chose DynamoDB for the single-table design.\n".encode()
    upload = upload_and_extract(env, extract_fn, user, "my notes+ideas.txt", "text/plain", body)
    assert upload.status == "completed", upload.error
    assert upload.error is None
    memory = run(get_store().get_memory(user, upload.memory_id))
    assert memory is not None
    assert memory.kind == "file"
    assert "single-table design" in memory.content
    assert memory.source.title == "my notes+ideas.txt"
    assert memory.upload_ids == [upload.upload_id]
    assert memory.metadata["filename"] == "my notes+ideas.txt"
    assert memory.metadata["content_type"] == "text/plain"
    assert memory.metadata["size"] == len(body)
    assert memory.status == "pending"  # handed to enrichment like any memory
    analyze = env.client("sqs").receive_message(
        QueueUrl=env.stack.queue_url("AnalyzeQueue"), MaxNumberOfMessages=10
    )
    bodies = [json.loads(m["Body"]) for m in analyze.get("Messages", [])]
    assert any(b["memory_id"] == memory.id for b in bodies)


def test_redelivery_changes_nothing(env: Env, extract_fn: ModuleType) -> None:
    from memlayer.services import uploads

    user = f"user-{new_id()}"
    ticket = ticket_for(user, "once.txt", "text/plain", 11)
    post_form(ticket, b"hello world")
    messages = _drain(env)
    event = sqs_event(env, messages)
    assert extract_fn.handler(event, None) == {"batchItemFailures": []}
    first = run(uploads.get_upload(user, ticket.upload_id))
    assert extract_fn.handler(event, None) == {"batchItemFailures": []}
    second = run(uploads.get_upload(user, ticket.upload_id))
    assert first.status == second.status == "completed"
    assert first.memory_id == second.memory_id
    assert second.updated_at == first.updated_at
    assert len(file_memories(user)) == 1


def test_pdf_text_is_extracted(env: Env, extract_fn: ModuleType) -> None:
    from memlayer.storage import get_store

    user = f"user-{new_id()}"
    pdf = make_pdf("Quarterly revenue grew by 42 percent")
    upload = upload_and_extract(env, extract_fn, user, "report.pdf", "application/pdf", pdf)
    assert upload.status == "completed", upload.error
    memory = run(get_store().get_memory(user, upload.memory_id))
    assert "Quarterly revenue grew by 42 percent" in memory.content
    assert memory.metadata["pages"] == 1
    assert memory.metadata["content_type"] == "application/pdf"


def test_html_text_is_extracted(env: Env, extract_fn: ModuleType) -> None:
    from memlayer.storage import get_store

    user = f"user-{new_id()}"
    paragraph = "Serverless memory layers keep every capture durable before enrichment. " * 4
    html = (
        "<!doctype html><html><head><title>Saved page</title></head><body>"
        f"<nav>Home | About</nav><article><h1>Durability</h1><p>{paragraph}</p>"
        f"<p>{paragraph}</p></article></body></html>"
    ).encode()
    upload = upload_and_extract(env, extract_fn, user, "page.html", "text/html", html)
    assert upload.status == "completed", upload.error
    memory = run(get_store().get_memory(user, upload.memory_id))
    assert "keep every capture durable" in memory.content
    assert "<p>" not in memory.content
    assert memory.metadata["title"] == "Saved page"


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "reason"),
    [
        ("fake.pdf", "application/pdf", b"just some text, not a PDF", "declared application/pdf"),
        ("empty.txt", "text/plain", b"", "the file is empty"),
        ("image.txt", "text/plain", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "PNG image"),
        ("blob.md", "text/markdown", b"abc\x00\x01\x02def" * 20, "binary"),
        ("plain.html", "text/html", b"no markup here at all", "no HTML markup"),
        ("blank.txt", "text/plain", b"   \n\n  \t ", "no text"),
    ],
)
def test_bad_files_fail_with_a_reason(
    env: Env, extract_fn: ModuleType, filename: str, content_type: str, data: bytes, reason: str
) -> None:
    user = f"user-{new_id()}"
    upload = upload_and_extract(env, extract_fn, user, filename, content_type, data)
    assert upload.status == "failed"
    assert reason in (upload.error or "")
    assert upload.memory_id is None
    assert file_memories(user) == []
    assert objects_under(env, f"uploads/{user}/{upload.upload_id}/") == []  # bad file removed


def test_unreadable_pdf_fails(env: Env, extract_fn: ModuleType) -> None:
    user = f"user-{new_id()}"
    broken = b"%PDF-1.7\n" + bytes(range(256)) * 4
    upload = upload_and_extract(env, extract_fn, user, "broken.pdf", "application/pdf", broken)
    assert upload.status == "failed"
    assert "PDF" in (upload.error or "")


def test_object_sent_with_another_type_fails(env: Env, extract_fn: ModuleType) -> None:
    """moto does not enforce the policy's Content-Type; the worker checks it again."""
    from memlayer.services import uploads

    user = f"user-{new_id()}"
    ticket = ticket_for(user, "notes.txt", "text/plain", 5)
    post_form(ticket, b"hello", content_type="text/html")
    assert extract_fn.handler(sqs_event(env, _drain(env)), None) == {"batchItemFailures": []}
    upload = run(uploads.get_upload(user, ticket.upload_id))
    assert upload.status == "failed"
    assert "sent as text/html" in (upload.error or "")


def test_an_object_never_reaches_another_users_upload(env: Env) -> None:
    from memlayer.services import uploads

    victim, attacker = f"user-{new_id()}", f"user-{new_id()}"
    ticket = ticket_for(victim, "secret.txt", "text/plain", 5)
    s3 = env.client("s3")
    forged = f"uploads/{attacker}/{ticket.upload_id}/secret.txt"
    s3.put_object(Bucket=env.bucket, Key=forged, Body=b"hello", ContentType="text/plain")
    _drain(env)
    assert run(uploads.handle_object_created(env.bucket, forged, 5)) is None
    other_name = f"uploads/{victim}/{ticket.upload_id}/other.txt"
    assert run(uploads.handle_object_created(env.bucket, other_name, 5)) is None
    assert run(uploads.handle_object_created("another-bucket", ticket.fields["key"], 5)) is None
    assert run(uploads.handle_object_created(env.bucket, "exports/x/y.zip", 5)) is None
    assert run(uploads.get_upload(victim, ticket.upload_id)).status == "awaiting"
    with pytest.raises(NotFound):
        run(uploads.get_upload(attacker, ticket.upload_id))


def test_an_upload_in_progress_is_not_taken_twice(env: Env) -> None:
    from memlayer.services import uploads

    user = f"user-{new_id()}"
    ticket = ticket_for(user, "a.txt", "text/plain", 5)
    store = uploads.uploads_store()
    record = run(store.get_upload(user, ticket.upload_id))
    run(
        store.update_upload(
            record.model_copy(update={"status": "extracting", "updated_at": utcnow()}),
            expected_version=record.version,
        )
    )
    with pytest.raises(uploads.UploadBusy):
        run(uploads.handle_object_created(env.bucket, ticket.fields["key"], 5))


def test_deleting_the_memory_deletes_the_upload(env: Env, extract_fn: ModuleType) -> None:
    from memlayer.services import memories, uploads

    user = f"user-{new_id()}"
    upload = upload_and_extract(env, extract_fn, user, "keep.txt", "text/plain", b"keep me")
    prefix = f"uploads/{user}/{upload.upload_id}/"
    assert objects_under(env, prefix) == [f"{prefix}keep.txt"]
    run(memories.delete(user, upload.memory_id))
    assert objects_under(env, prefix) == []
    with pytest.raises(NotFound):
        run(uploads.get_upload(user, upload.upload_id))


def test_delete_all_uploads_erases_objects_and_records(env: Env) -> None:
    from memlayer.services import uploads

    user = f"user-{new_id()}"
    tickets = [ticket_for(user, f"f{i}.txt", "text/plain", 2) for i in range(3)]
    for ticket in tickets:
        post_form(ticket, b"hi")
    _drain(env)
    env.client("s3").put_object(Bucket=env.bucket, Key=f"exports/{user}/job.zip", Body=b"zip")
    assert run(uploads.delete_all_uploads(user)) == 3
    assert objects_under(env, f"uploads/{user}/") == []
    assert objects_under(env, f"exports/{user}/") == []
    assert run(uploads.uploads_store().all_uploads(user)) == []


def test_stuck_uploads_are_listed_for_cleanup(env: Env) -> None:
    from datetime import timedelta

    from memlayer.services import uploads

    user = f"user-{new_id()}"
    ticket = ticket_for(user, "stuck.txt", "text/plain", 2)
    store = uploads.uploads_store()
    later = run(store.list_uploads_older_than(utcnow() + timedelta(seconds=1), limit=1000))
    assert ticket.upload_id in {u.id for u in later}
    earlier = run(store.list_uploads_older_than(utcnow() - timedelta(hours=1), limit=1000))
    assert ticket.upload_id not in {u.id for u in earlier}


# ---------------------------------------------------------------------------- the worker


def test_worker_ignores_test_events_and_reports_only_bad_messages(
    env: Env, extract_fn: ModuleType
) -> None:
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": env.bucket})
    messages = [
        {"MessageId": "good", "ReceiptHandle": "r1", "Body": test_event},
        {"MessageId": "bad", "ReceiptHandle": "r2", "Body": "not json"},
        {"MessageId": "other", "ReceiptHandle": "r3", "Body": json.dumps({"Records": []})},
    ]
    result = extract_fn.handler(sqs_event(env, messages), None)
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}


def test_sample_event_parses() -> None:
    from memlayer.services import uploads

    event = json.loads((ROOT / "events/extract_s3_sqs.json").read_text())
    created = uploads.parse_s3_event(event["Records"][0]["body"])
    assert len(created) == 1
    assert created[0].key.startswith("uploads/")
    assert " " in created[0].key  # '+' in the notification is a space in the key
    assert created[0].size > 0


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
    from memlayer.services import uploads

    assert uploads.decode_text("café".encode("cp1252")) == "café"
    assert uploads.decode_text("\ufeffhello".encode()) == "hello"
    assert uploads.decode_text("naïve".encode("utf-16")) == "naïve"
    with pytest.raises(uploads.ExtractionFailed):
        uploads.decode_text(b"\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f" * 10)
