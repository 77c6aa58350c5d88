"""The presigned upload form's policy document itself (S3 enforces it; moto does not, so it
is checked here), the R2 variant (a presigned PUT), download URLs and object keys.

Signing is local computation: each test builds its own client with fake credentials and
touches neither os.environ nor the cached settings (integration tests share this process
with a running local cloud)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config

from memlayer import blobs
from memlayer.services import uploads

BUCKET = "memlayer-test-uploads"


def s3_client(region: str = "eu-west-1", endpoint_url: str | None = None) -> Any:
    return boto3.session.Session().client(
        "s3",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(signature_version="s3v4"),
    )


def test_post_policy_pins_key_type_size_and_expiry() -> None:
    key = blobs.object_key("user-1", "01JDQ3C8Z8X9Y7W6V5T4S3R2Q1", "Résumé (final).pdf")
    before = datetime.now(UTC)
    presigned = blobs.sign_upload(
        s3_client(),
        BUCKET,
        key,
        content_type="application/pdf",
        size=2048,
        max_bytes=5_000,
        expires_in=900,
    )
    assert presigned.method == "POST"
    assert BUCKET in presigned.url
    assert presigned.fields["key"] == key
    assert presigned.fields["Content-Type"] == "application/pdf"
    assert presigned.fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"  # SigV4, not SigV2

    policy = json.loads(base64.b64decode(presigned.fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", 1, 5_000] in conditions
    assert {"Content-Type": "application/pdf"} in conditions
    assert {"key": key} in conditions  # exact key: no other object can be written
    assert {"bucket": BUCKET} in conditions
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in conditions)

    expires = datetime.fromisoformat(str(policy["expiration"]).replace("Z", "+00:00"))
    assert before + timedelta(seconds=890) <= expires <= before + timedelta(seconds=910)
    assert abs((presigned.expires_at - expires).total_seconds()) <= 2


def test_r2_gets_a_presigned_put_with_signed_type_and_length() -> None:
    client = s3_client("auto", "https://0123abcd.r2.cloudflarestorage.com")
    assert blobs.is_r2(client) and not blobs.is_r2(s3_client())
    presigned = blobs.sign_upload(
        client,
        BUCKET,
        "uploads/u/01JDQ3C8Z8X9Y7W6V5T4S3R2Q1/a.txt",
        content_type="text/plain",
        size=42,
        max_bytes=5_000,
        expires_in=300,
    )
    assert presigned.method == "PUT"
    assert presigned.fields == {}
    assert presigned.headers == {"Content-Type": "text/plain"}
    url = urlsplit(presigned.url)
    assert url.hostname == "0123abcd.r2.cloudflarestorage.com"
    query = parse_qs(url.query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert query["X-Amz-Expires"] == ["300"]


def test_download_url_names_the_file() -> None:
    url = blobs.sign_download(
        s3_client(), BUCKET, "exports/u/J.zip", expires_in=60, filename="e x.zip"
    )
    query = parse_qs(urlsplit(url).query)
    assert query["response-content-disposition"] == ["attachment; filename*=UTF-8''e%20x.zip"]
    assert query["X-Amz-Expires"] == ["60"]


def test_delete_prefix_refuses_non_folders() -> None:
    with pytest.raises(ValueError):
        asyncio.run(blobs.delete_prefix("uploads/user-1"))
    with pytest.raises(ValueError):
        asyncio.run(blobs.delete_prefix(""))


@pytest.mark.parametrize(
    ("filename", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("Résumé (final).pdf", "Resume_final.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("..", "file"),
        ("notes", "notes"),
        ("x.tar.gz", "x.tar.gz"),
        ("日本語.md", "file.md"),
        ("a" * 300 + ".markdown", "a" * 111 + ".markdown"),
    ],
)
def test_safe_filename(filename: str, safe: str) -> None:
    assert blobs.safe_filename(filename) == safe


def test_object_keys_round_trip_and_refuse_other_shapes() -> None:
    upload_id = "01JDQ3C8Z8X9Y7W6V5T4S3R2Q1"
    for user_id in ("3f0c1a9e-2b7d-4c1e-9a55-0b1f4e2d7c11", "github|12/34"):
        key = blobs.object_key(user_id, upload_id, "a b.txt")
        assert key.startswith(blobs.upload_prefix(user_id, upload_id))
        assert key.count("/") == 3
        assert blobs.parse_key(key) == (user_id, upload_id)
    assert blobs.parse_key("exports/u/01JDQ3C8Z8X9Y7W6V5T4S3R2Q1.zip") is None
    assert blobs.parse_key("uploads/u/not-an-id/a.txt") is None
    assert blobs.parse_key("uploads/u/01JDQ3C8Z8X9Y7W6V5T4S3R2Q1/x/a.txt") is None


def test_sniffing_names_what_a_file_really_is() -> None:
    assert uploads.sniff(b"%PDF-1.7\n...") == "PDF"
    assert uploads.sniff(b"\n\n%PDF-1.4") == "PDF"
    assert uploads.sniff(b"PK\x03\x04rest") is not None
    assert uploads.sniff(b"\x89PNG\r\n\x1a\n") == "PNG image"
    assert uploads.sniff(b"# Markdown title\n") is None
