"""Exports against moto (a ThreadedMotoServer with template.yaml's resources): the job and its
tasks message, the zip (JSON with every memory and its analysis, readable Markdown) fetched
through the presigned download URL, idempotency and failure."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from infra.localcloud.resources import create_resources
from infra.localcloud.stack import build_stack
from memlayer.ids import new_id, utcnow

ROOT = Path(__file__).resolve().parents[2]


def _clear_caches() -> None:
    import memlayer.aws
    import memlayer.settings
    import memlayer.storage

    memlayer.settings.get_settings.cache_clear()
    memlayer.storage.get_store.cache_clear()
    memlayer.aws.client.cache_clear()


class Env:
    def __init__(self, endpoint: str, stack: Any) -> None:
        self.endpoint = endpoint
        self.stack = stack
        self.bucket = stack.resolver.physical_name("UploadsBucket")
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
            "TABLE_NAME": stack.resolver.physical_name("Table"),
            "UPLOADS_BUCKET": stack.resolver.physical_name("UploadsBucket"),
            "ANALYZE_QUEUE_URL": stack.queue_url("AnalyzeQueue"),
            "EMBED_QUEUE_URL": stack.queue_url("EmbedQueue"),
            "TASKS_QUEUE_URL": stack.queue_url("TasksQueue"),
        }.items():
            mp.setenv(name, value)
        create_resources(stack, boto3.session.Session(), endpoint)
        _clear_caches()
        yield Env(endpoint, stack)
    _clear_caches()
    server.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _analysis(title: str) -> Any:
    from memlayer.ai.analysis import Analysis

    return Analysis(
        title=title,
        description="Why the team picked a single DynamoDB table.",
        tags=["dynamodb", "architecture"],
        category="technology",
        sentiment="positive",
        key_topics=["single-table design", "GSI"],
        confidence=0.9,
        model="test-model",
    )


def seed(user_id: str) -> dict[str, Any]:
    """Three memories: one analysed (as enrichment leaves it), one with a fenced code block,
    one that came from an uploaded file."""
    from memlayer.models import Source
    from memlayer.services import memories
    from memlayer.services.uploads import uploads_store
    from memlayer.storage import get_store
    from memlayer.storage.uploads import UploadRecord

    store = get_store()
    first = run(
        memories.create(
            user_id,
            memories.Draft(
                content="We store everything in one DynamoDB table keyed by user.",
                kind="note",
                source=Source(url="https://example.com/design", provider="claude"),
                tags=["design"],
            ),
        )
    ).memory
    record = run(store.get_memory(user_id, first.id))
    analysed = run(
        store.save_memory(
            record.model_copy(
                update={"analysis": _analysis("Single-table design"), "status": "ready"}
            ),
            expected_version=record.version,
        )
    )
    code = run(
        memories.create(
            user_id,
            memories.Draft(content="Use this:\n```python\nprint('hi')\n```\n", kind="prompt"),
        )
    ).memory
    upload_id = new_id()
    now = utcnow()
    run(
        uploads_store().put_upload(
            UploadRecord(
                user_id=user_id,
                id=upload_id,
                filename="report.pdf",
                content_type="application/pdf",
                size=1000,
                received_size=1024,
                key=f"uploads/{user_id}/{upload_id}/report.pdf",
                status="completed",
                created_at=now,
                updated_at=now,
                url_expires_at=now,
            )
        )
    )
    from_file = run(
        memories.create(
            user_id,
            memories.Draft(
                content="Revenue grew 42 percent.",
                kind="file",
                source=Source(title="report.pdf"),
                upload_ids=[upload_id],
            ),
        )
    ).memory
    return {
        "analysed": analysed,
        "code": code,
        "file": from_file,
        "upload_id": upload_id,
    }


def tasks_messages(env: Env) -> list[dict[str, Any]]:
    sqs = env.client("sqs")
    found = []
    while True:
        got = sqs.receive_message(QueueUrl=env.tasks_queue, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not got:
            return found
        for message in got:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=env.tasks_queue, ReceiptHandle=message["ReceiptHandle"])


def download(url: str) -> zipfile.ZipFile:
    resp = httpx.get(url)
    assert resp.status_code == 200, resp.text
    return zipfile.ZipFile(io.BytesIO(resp.content))


def test_start_export_writes_the_job_and_queues_it(env: Env) -> None:
    from memlayer.services import export
    from memlayer.storage import get_store

    user = f"user-{new_id()}"
    job = run(export.start_export(user))
    assert job.kind == "export"
    assert job.status == "queued"
    stored = run(get_store().get_job(user, job.id))
    assert stored is not None and stored.kind == "export"
    assert {"type": "export", "user_id": user, "job_id": job.id} in tasks_messages(env)


def test_export_zip_holds_every_memory_with_its_analysis(env: Env) -> None:
    from memlayer.services import export, tasks

    user = f"user-{new_id()}"
    seeded = seed(user)
    job = run(export.start_export(user))
    for message in tasks_messages(env):  # the way the tasks worker runs it
        run(tasks.dispatch(message))
    from memlayer.storage import get_store

    done = run(get_store().get_job(user, job.id))
    assert done.status == "completed", done.error
    assert done.progress == 1.0
    assert done.message == "exported 3 memories"
    assert done.download_url

    archive = download(done.download_url)
    assert sorted(archive.namelist()) == ["memories.json", "memories.md"]
    document = json.loads(archive.read("memories.json"))
    assert document["format"] == "memlayer.export"
    assert document["count"] == 3
    by_id = {item["id"]: item for item in document["memories"]}
    assert set(by_id) == {seeded["analysed"].id, seeded["code"].id, seeded["file"].id}

    analysed = by_id[seeded["analysed"].id]
    assert analysed["analysis"]["title"] == "Single-table design"
    assert analysed["analysis"]["key_topics"] == ["single-table design", "GSI"]
    assert analysed["source"]["url"] == "https://example.com/design"
    assert analysed["tags"] == ["design"]
    assert analysed["status"] == "ready"
    assert "user_id" not in analysed
    assert by_id[seeded["code"].id]["analysis"] is None
    assert by_id[seeded["file"].id]["files"] == [
        {
            "upload_id": seeded["upload_id"],
            "filename": "report.pdf",
            "content_type": "application/pdf",
            "size": 1024,
        }
    ]

    markdown = archive.read("memories.md").decode()
    assert markdown.startswith("# memlayer export")
    assert "## Single-table design" in markdown
    assert "> Why the team picked a single DynamoDB table." in markdown
    assert "**Key topics:** single-table design, GSI" in markdown
    assert "We store everything in one DynamoDB table keyed by user." in markdown
    assert "**File:** report.pdf (application/pdf)" in markdown
    # Content holding ``` is fenced with a longer fence, so it cannot break out.
    assert "````text\nUse this:\n```python" in markdown

    keys = env.client("s3").list_objects_v2(Bucket=env.bucket, Prefix=f"exports/{user}/")
    assert [obj["Key"] for obj in keys["Contents"]] == [f"exports/{user}/{job.id}.zip"]


def test_run_export_is_idempotent_and_private(env: Env) -> None:
    from memlayer.services import export, memories

    user, other = f"user-{new_id()}", f"user-{new_id()}"
    run(memories.create(user, memories.Draft(content="only mine")))
    job = run(export.start_export(user))
    tasks_messages(env)
    first = run(export.run_export(user, job.id))
    again = run(export.run_export(user, job.id))
    assert first.status == again.status == "completed"
    assert again.updated_at == first.updated_at  # a redelivery changes nothing
    assert run(export.run_export(other, job.id)) is None  # not another user's job
    assert run(export.run_export(user, new_id())) is None


def test_empty_export_still_completes(env: Env) -> None:
    from memlayer.services import export

    user = f"user-{new_id()}"
    job = run(export.start_export(user))
    tasks_messages(env)
    done = run(export.run_export(user, job.id))
    assert done.status == "completed"
    document = json.loads(download(done.download_url).read("memories.json"))
    assert document["count"] == 0
    assert document["memories"] == []


def test_export_failure_marks_the_job_failed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from memlayer.services import export

    user = f"user-{new_id()}"
    job = run(export.start_export(user))
    tasks_messages(env)
    monkeypatch.setenv("UPLOADS_BUCKET", "no-such-bucket-here")
    _clear_caches()
    try:
        failed = run(export.run_export(user, job.id))
    finally:
        monkeypatch.undo()
        _clear_caches()
    assert failed.status == "failed"
    assert "export failed" in (failed.error or "")
    assert failed.download_url is None
