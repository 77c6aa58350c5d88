"""Object storage (data access): the uploads bucket, `settings.uploads_bucket`.

Uploads land under `uploads/<user>/<upload_id>/<file name>` through a presigned form; exports
are written under `exports/<user>/<job_id>.zip` and handed out as presigned GET URLs; the search
index's snapshot of a user is `index/<user>/snapshot` (storage/index_snapshot.py). boto3 is
synchronous, so every call (presigning too: the first one may fetch credentials) runs in a
worker thread.

Cloudflare R2 instead of S3: R2 speaks the S3 API, so only the client changes. Point it at
`https://<account_id>.r2.cloudflarestorage.com` with an R2 API token's access key pair and the
region `auto`: either for every client (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_REGION=auto`, only when nothing else runs on AWS) or, with
DynamoDB and SQS staying on AWS, for this client alone (the settings `S3_ENDPOINT_URL`,
`S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`, `S3_REGION`). Two R2 differences are handled or
must be: R2 has no browser POST uploads, so on an R2 endpoint `presign_upload` returns a
presigned PUT (Content-Type and Content-Length signed) instead of a POST form; and R2 sends no
S3 event notifications to SQS (its notifications go to Cloudflare Queues), so something else
must deliver `ObjectCreated` to the extract worker.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Literal
from urllib.parse import quote, unquote, urlsplit

from memlayer import aws
from memlayer.ids import is_id
from memlayer.settings import get_settings

DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys
_UPLOAD_KEY = re.compile(r"^uploads/([^/]+)/([0-9A-HJKMNP-TV-Z]{26})/([^/]+)$")
_MAX_SAFE_NAME = 120


@dataclass(frozen=True)
class PresignedUpload:
    """How a client sends one file: `method` to `url` with the form `fields` (POST, the file
    as the last form part) or the `headers` (PUT, the file as the body)."""

    method: Literal["POST", "PUT"]
    url: str
    expires_at: datetime
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Blob:
    data: bytes
    size: int  # the whole object's size; more than len(data) when it was cut at the cap
    content_type: str | None

    @property
    def truncated(self) -> bool:
        return self.size > len(self.data)


# ---------------------------------------------------------------------------- keys


def safe_filename(filename: str) -> str:
    """The file name as it may appear in an object key: ASCII letters, digits, '.', '-', '_',
    at most 120 characters, the extension kept."""
    name = re.split(r"[\\/]", filename)[-1]
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ext = re.sub(r"[^A-Za-z0-9]+", "", ext)[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    stem = stem[: _MAX_SAFE_NAME - len(ext) - 1].rstrip("._-") or "file"
    return f"{stem}.{ext}" if ext else stem


def upload_prefix(user_id: str, upload_id: str | None = None) -> str:
    """The folder of one upload, or (`upload_id=None`) of all the user's uploads. Any other
    id is refused: an empty one would name the user's whole folder."""
    prefix = f"uploads/{quote(user_id, safe='')}/"
    if upload_id is None:
        return prefix
    if not is_id(upload_id):
        raise ValueError(f"not an upload id: {upload_id!r}")
    return f"{prefix}{upload_id}/"


def object_key(user_id: str, upload_id: str, filename: str) -> str:
    return upload_prefix(user_id, upload_id) + safe_filename(filename)


def parse_key(key: str) -> tuple[str, str] | None:
    """(user id, upload id) of an upload's object key; None for any other key."""
    match = _UPLOAD_KEY.match(key)
    if match is None:
        return None
    return unquote(match.group(1)), match.group(2)


def export_prefix(user_id: str) -> str:
    """The folder of the user's export zips."""
    return f"exports/{quote(user_id, safe='')}/"


def index_prefix(user_id: str) -> str:
    """The folder of the user's search index snapshot."""
    return f"index/{quote(user_id, safe='')}/"


def index_snapshot_key(user_id: str) -> str:
    return f"{index_prefix(user_id)}snapshot"


def export_key(user_id: str, job_id: str) -> str:
    """Where an export job's zip is written."""
    return f"{export_prefix(user_id)}{job_id}.zip"


# ---------------------------------------------------------------------------- objects


def bucket() -> str:
    return get_settings().uploads_bucket


def _client() -> Any:
    """The S3 client: a dedicated one when S3-specific settings exist (R2 next to AWS), else
    the shared one."""
    settings = get_settings()
    if not (settings.s3_endpoint_url or settings.s3_access_key_id):
        return aws.client("s3")
    secret = settings.s3_secret_access_key
    return _dedicated_client(
        settings.s3_endpoint_url or settings.aws_endpoint_url,
        settings.s3_region or settings.aws_region,
        settings.s3_access_key_id,
        secret.get_secret_value() if secret else None,
    )


@aws.BuiltOnce
def _dedicated_client(
    endpoint: str | None, region: str, key_id: str | None, secret: str | None
) -> Any:
    # lazy: boto3 stays out of init, as in `aws.client`
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=30,
            max_pool_connections=32,
            signature_version="s3v4",
        ),
    )


def is_r2(client: Any) -> bool:
    host = urlsplit(str(client.meta.endpoint_url)).hostname or ""
    return host.endswith(".r2.cloudflarestorage.com")


def _missing(exc: BaseException) -> bool:
    return aws.error_code(exc) in {"NoSuchKey", "404", "NotFound"}


def sign_upload(
    client: Any,
    bucket_name: str,
    key: str,
    *,
    content_type: str,
    size: int,
    max_bytes: int,
    expires_in: int,
) -> PresignedUpload:
    """A presigned POST form whose policy allows exactly this key, this Content-Type and
    1..`max_bytes` bytes (S3 enforces the policy; the extract worker checks again). On R2,
    which has no POST uploads, a presigned PUT signed for this Content-Type and `size`.
    Local computation (given credentials): no request is sent."""
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=expires_in)
    if is_r2(client):
        url = client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": bucket_name,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": size,
            },
            ExpiresIn=expires_in,
        )
        return PresignedUpload(
            method="PUT", url=url, expires_at=expires_at, headers={"Content-Type": content_type}
        )
    post = client.generate_presigned_post(
        Bucket=bucket_name,
        Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
        ExpiresIn=expires_in,
    )
    return PresignedUpload(
        method="POST",
        url=post["url"],
        expires_at=expires_at,
        fields={str(k): str(v) for k, v in post["fields"].items()},
    )


async def presign_upload(
    key: str, *, content_type: str, size: int, max_bytes: int, expires_in: int
) -> PresignedUpload:
    """`sign_upload` for the uploads bucket (in a thread: the first signing may fetch
    credentials)."""
    return await asyncio.to_thread(
        sign_upload,
        _client(),
        bucket(),
        key,
        content_type=content_type,
        size=size,
        max_bytes=max_bytes,
        expires_in=expires_in,
    )


async def head(key: str) -> tuple[int, str | None] | None:
    """(size, content type) of an object, or None when there is none."""
    try:
        resp = await asyncio.to_thread(_client().head_object, Bucket=bucket(), Key=key)
    except Exception as exc:
        if _missing(exc):
            return None
        raise
    return int(resp["ContentLength"]), resp.get("ContentType")


async def get_bytes(key: str, *, max_bytes: int) -> Blob | None:
    """At most `max_bytes` of an object (a ranged GET, so a huge object is never pulled
    whole) with its full size; None when there is no such object."""

    def run() -> Blob | None:
        try:
            resp = _client().get_object(Bucket=bucket(), Key=key, Range=f"bytes=0-{max_bytes}")
        except Exception as exc:
            if _missing(exc):
                return None
            if aws.error_code(exc) == "InvalidRange":  # an empty object has no byte 0
                return Blob(data=b"", size=0, content_type=None)
            raise
        body = resp["Body"]
        try:
            data = body.read(max_bytes + 1)
        finally:
            body.close()
        total = resp.get("ContentRange", "").rpartition("/")[2]
        size = int(total) if total.isdigit() else int(resp.get("ContentLength", len(data)))
        return Blob(
            data=data[:max_bytes], size=max(size, len(data)), content_type=resp.get("ContentType")
        )

    return await asyncio.to_thread(run)


async def put_bytes(key: str, data: bytes, *, content_type: str) -> None:
    await asyncio.to_thread(
        _client().put_object, Bucket=bucket(), Key=key, Body=data, ContentType=content_type
    )


async def put_file(key: str, fileobj: IO[bytes], *, content_type: str) -> None:
    """Streams a file-like object (multipart when large)."""
    await asyncio.to_thread(
        _client().upload_fileobj,
        fileobj,
        bucket(),
        key,
        ExtraArgs={"ContentType": content_type},
    )


def sign_download(
    client: Any, bucket_name: str, key: str, *, expires_in: int, filename: str | None = None
) -> str:
    """A presigned GET URL, as an attachment named `filename`. A URL signed with temporary
    credentials (a Lambda role's) stops working when they expire, whatever `expires_in`
    says; sign on read when it matters."""
    params: dict[str, str] = {"Bucket": bucket_name, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    return str(client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))


async def presigned_get(key: str, *, expires_in: int, filename: str | None = None) -> str:
    return await asyncio.to_thread(
        sign_download, _client(), bucket(), key, expires_in=expires_in, filename=filename
    )


def _delete_batch(keys: list[str]) -> int:
    if not keys:
        return 0
    resp = _client().delete_objects(
        Bucket=bucket(), Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
    )
    errors = [e for e in resp.get("Errors", []) if e.get("Code") != "NoSuchKey"]
    if errors:
        first = errors[0]
        raise RuntimeError(
            f"{len(errors)} objects were not deleted; first {first.get('Key')}: {first.get('Code')}"
        )
    return len(keys)


async def delete_keys(keys: list[str]) -> int:
    """Deletes these objects (missing ones are fine); returns how many keys were sent."""
    unique = sorted(set(keys))

    def run() -> int:
        return sum(
            _delete_batch(unique[start : start + DELETE_BATCH])
            for start in range(0, len(unique), DELETE_BATCH)
        )

    return await asyncio.to_thread(run)


async def delete_prefix(prefix: str) -> int:
    """Deletes every object under `prefix` (which must name a folder: it ends with '/');
    returns how many were deleted."""
    if not prefix.endswith("/") or prefix == "/":
        raise ValueError(f"refusing to delete under {prefix!r}: not a folder prefix")

    def run() -> int:
        deleted = 0
        paginator = _client().get_paginator("list_objects_v2")
        for page in paginator.paginate(
            Bucket=bucket(), Prefix=prefix, PaginationConfig={"PageSize": DELETE_BATCH}
        ):
            deleted += _delete_batch([obj["Key"] for obj in page.get("Contents", [])])
        return deleted

    return await asyncio.to_thread(run)
