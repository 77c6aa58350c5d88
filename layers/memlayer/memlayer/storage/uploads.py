"""DynamoDB access for uploads (a mixin of DynamoStore) and its part of the Store interface.

An upload record lives in its user's partition (`PK=USER#<uid>`, `SK=UPL#<upload_id>`) as a
JSON document (`data`) plus the attributes conditions and indexes need: `status`, `version`
(optimistic concurrency), `expires_at` (DynamoDB TTL, set from the record's `purge_after`) and,
while the upload is still open (awaiting, received or extracting), `GSI1PK=UPLOADS#OPEN` /
`GSI1SK=<created_at>#<upload_id>`: a sparse index the cleanup job reads to find stuck uploads
without scanning the table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from memlayer.ids import is_id
from memlayer.lazy_model import LazyModel
from memlayer.models import Timestamp
from memlayer.storage.dynamo_base import DynamoBase, _n, _s, user_pk
from memlayer.storage.errors import VersionConflict

UploadStatus = Literal["awaiting", "received", "extracting", "completed", "failed"]
OPEN_STATUSES: frozenset[str] = frozenset({"awaiting", "received", "extracting"})
OPEN_UPLOADS_PK = "UPLOADS#OPEN"


class UploadRecord(LazyModel):
    """An upload as storage keeps it."""

    user_id: str
    id: str
    filename: str
    content_type: str
    size: int  # as declared when the ticket was issued
    key: str  # the object key in the uploads bucket
    status: UploadStatus = "awaiting"
    received_size: int | None = None  # as S3 reported it
    memory_id: str | None = None
    error: str | None = None
    created_at: Timestamp
    updated_at: Timestamp
    url_expires_at: Timestamp  # when the presigned form stops working
    purge_after: Timestamp | None = None  # DynamoDB TTL; None keeps the record
    version: int = 1


def upload_sk(upload_id: str) -> str:
    return f"UPL#{upload_id}"


def _sortable(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


class UploadsStore(Protocol):
    async def put_upload(self, record: UploadRecord) -> None: ...

    async def get_upload(self, user_id: str, upload_id: str) -> UploadRecord | None: ...

    async def update_upload(self, record: UploadRecord, *, expected_version: int) -> UploadRecord:
        """Saves `record` if the stored copy is still at `expected_version` (else raises
        `VersionConflict`); returns the saved record at version + 1."""
        ...

    async def all_uploads(self, user_id: str) -> list[UploadRecord]: ...

    async def list_uploads_older_than(
        self, cutoff: datetime, *, limit: int = 100
    ) -> list[UploadRecord]:
        """Open (awaiting, received, extracting) uploads of every user created before
        `cutoff`, oldest first: what the cleanup job looks at."""
        ...

    async def delete_uploads(self, user_id: str, upload_ids: list[str]) -> int:
        """Deletes the records (only in `user_id`'s partition); returns how many ids were
        valid. Objects in the bucket are the caller's business (`memlayer.blobs`)."""
        ...


class DynamoUploads(DynamoBase):
    def _upload_item(self, record: UploadRecord) -> dict[str, Any]:
        item: dict[str, Any] = {
            "PK": _s(user_pk(record.user_id)),
            "SK": _s(upload_sk(record.id)),
            "type": _s("upload"),
            "status": _s(record.status),
            "version": _n(record.version),
            "data": _s(record.model_dump_json()),
        }
        if record.status in OPEN_STATUSES:
            item["GSI1PK"] = _s(OPEN_UPLOADS_PK)
            item["GSI1SK"] = _s(f"{_sortable(record.created_at)}#{record.id}")
        if record.purge_after is not None:
            item["expires_at"] = _n(int(record.purge_after.timestamp()))
        return item

    @staticmethod
    def _upload_of(item: dict[str, Any]) -> UploadRecord:
        return UploadRecord.model_validate_json(item["data"]["S"])

    async def put_upload(self, record: UploadRecord) -> None:
        await self._run(
            self.client.put_item,
            TableName=self.table,
            Item=self._upload_item(record),
            ConditionExpression="attribute_not_exists(PK)",
        )

    async def get_upload(self, user_id: str, upload_id: str) -> UploadRecord | None:
        if not is_id(upload_id):
            return None
        item = await self._get(user_pk(user_id), upload_sk(upload_id))
        return self._upload_of(item) if item else None

    async def update_upload(self, record: UploadRecord, *, expected_version: int) -> UploadRecord:
        saved = record.model_copy(update={"version": expected_version + 1})
        try:
            await self._run(
                self.client.put_item,
                TableName=self.table,
                Item=self._upload_item(saved),
                ConditionExpression="#v = :v",
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues={":v": _n(expected_version)},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise VersionConflict(record.id) from None
        return saved

    async def all_uploads(self, user_id: str) -> list[UploadRecord]:
        items = await self._run(self._query_all, user_id=user_id, prefix="UPL#")
        return [self._upload_of(item) for item in items]

    async def list_uploads_older_than(
        self, cutoff: datetime, *, limit: int = 100
    ) -> list[UploadRecord]:
        def run() -> list[dict[str, Any]]:
            request: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": "GSI1",
                "KeyConditionExpression": "GSI1PK = :pk AND GSI1SK < :cutoff",
                "ExpressionAttributeValues": {
                    ":pk": _s(OPEN_UPLOADS_PK),
                    ":cutoff": _s(_sortable(cutoff)),
                },
                "Limit": limit,
            }
            items: list[dict[str, Any]] = []
            for page in self._pages(request):
                items.extend(page)
                if len(items) >= limit:
                    break
            return items[:limit]

        return [self._upload_of(item) for item in await self._run(run)]

    async def delete_uploads(self, user_id: str, upload_ids: list[str]) -> int:
        ids = sorted({upload_id for upload_id in upload_ids if is_id(upload_id)})

        def run() -> None:
            requests = [
                {
                    "DeleteRequest": {
                        "Key": {"PK": _s(user_pk(user_id)), "SK": _s(upload_sk(upload_id))}
                    }
                }
                for upload_id in ids
            ]
            self._batch_write(requests)

        if ids:
            await self._run(run)
        return len(ids)
