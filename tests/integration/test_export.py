"""Exports through the local cloud: POST /v1/export → an export job and a tasks message → the
tasks worker → one zip in the bucket (every memory with its analysis as JSON, readable
Markdown) → GET /v1/jobs/{id} → the presigned download URL; idempotency and failure."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from typing import Any

import httpx
import pytest

from memlayer.ids import new_id, utcnow
from tests.conftest import User


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


def seed(cloud: Any, user_id: str) -> dict[str, Any]:
    """Three enriched memories: one with a fenced code block, one from an uploaded file, and
    one whose analysis is then set to known values."""
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
    cloud.drain(timeout=30)  # enrichment first, so the analysis set below stays
    record = run(store.get_memory(user_id, first.id))
    analysed = run(
        store.save_memory(
            record.model_copy(update={"analysis": _analysis("Single-table design")}),
            expected_version=record.version,
        )
    )
    return {"analysed": analysed, "code": code, "file": from_file, "upload_id": upload_id}


def download(url: str) -> zipfile.ZipFile:
    response = httpx.get(url)
    assert response.status_code == 200, response.text
    return zipfile.ZipFile(io.BytesIO(response.content))


def export_through_the_api(cloud: Any, user: User) -> dict[str, Any]:
    accepted = user.http.post("/v1/export")
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    deadline = time.monotonic() + 30
    while True:
        job = user.http.get(f"/v1/jobs/{job_id}")
        assert job.status_code == 200, job.text
        if job.json()["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return dict(job.json())
        time.sleep(0.05)


def test_export_zip_holds_every_memory_with_its_analysis(cloud: Any, user: User) -> None:
    seeded = seed(cloud, user.user_id)
    job = export_through_the_api(cloud, user)
    assert job["status"] == "completed", job
    assert job["progress"] == 1.0
    assert job["message"] == "exported 3 memories"

    archive = download(job["download_url"])
    assert sorted(archive.namelist()) == ["memories.json", "memories.md"]
    document = json.loads(archive.read("memories.json"))
    assert document["format"] == "memlayer.export"
    assert document["count"] == 3
    by_id = {item["id"]: item for item in document["memories"]}
    assert set(by_id) == {seeded["analysed"].id, seeded["code"].id, seeded["file"].id}
    for item in by_id.values():
        assert item["analysis"] is not None  # every memory carries its analysis
        assert "user_id" not in item

    analysed = by_id[seeded["analysed"].id]
    assert analysed["analysis"]["title"] == "Single-table design"
    assert analysed["analysis"]["key_topics"] == ["single-table design", "GSI"]
    assert analysed["source"]["url"] == "https://example.com/design"
    assert analysed["tags"] == ["design"]
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
    assert "3 memories" in markdown
    assert "## Single-table design" in markdown
    assert "> Why the team picked a single DynamoDB table." in markdown
    assert "**Key topics:** single-table design, GSI" in markdown
    assert "We store everything in one DynamoDB table keyed by user." in markdown
    assert "**File:** report.pdf (application/pdf)" in markdown
    # Content holding ``` gets a longer fence, so it cannot break out of its block.
    assert "````text\nUse this:\n```python" in markdown

    listing = cloud.boto3_client("s3").list_objects_v2(
        Bucket=cloud.bucket_name("UploadsBucket"), Prefix=f"exports/{user.user_id}/"
    )
    assert [obj["Key"] for obj in listing["Contents"]] == [
        f"exports/{user.user_id}/{job['job_id']}.zip"
    ]


def test_an_empty_account_exports_an_empty_zip(cloud: Any, user: User) -> None:
    job = export_through_the_api(cloud, user)
    assert job["status"] == "completed"
    document = json.loads(download(job["download_url"]).read("memories.json"))
    assert document["count"] == 0
    assert document["memories"] == []


def test_run_export_is_idempotent_and_private(cloud: Any, user: User, other_user: User) -> None:
    from memlayer.services import export

    job = export_through_the_api(cloud, user)
    assert job["status"] == "completed"
    again = run(export.run_export(user.user_id, job["job_id"]))
    assert again.status == "completed"
    assert again.updated_at.isoformat().replace("+00:00", "Z") == job["updated_at"]
    assert run(export.run_export(other_user.user_id, job["job_id"])) is None
    assert other_user.http.get(f"/v1/jobs/{job['job_id']}").status_code == 404
    assert run(export.run_export(user.user_id, new_id())) is None


def test_a_failed_export_says_why(cloud: Any, user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    from memlayer import blobs
    from memlayer.models import JobRecord
    from memlayer.services import export
    from memlayer.storage import get_store

    now = utcnow()
    record = JobRecord(
        user_id=user.user_id, id=new_id(), kind="export", created_at=now, updated_at=now
    )
    run(get_store().put_job(record))

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("bucket unreachable")

    monkeypatch.setattr(blobs, "put_file", broken)
    failed = run(export.run_export(user.user_id, record.id))
    assert failed.status == "failed"
    assert failed.error == "the export failed (ConnectionError)"
    assert failed.download_url is None
    shown = user.http.get(f"/v1/jobs/{record.id}").json()
    assert shown["status"] == "failed" and shown["error"] == failed.error
