"""DynamoDB access for accounts (a mixin of DynamoStore) and its part of the Store interface:
API keys, erasing a user, table-wide counts for the admin (the cleanup sweep's queries are in
storage/cleanup.py).

API key items: PK `USER#<uid>`, SK `KEY#<id>`, `GSI1PK = APIKEY#<sha256 of the key>`,
`GSI1SK = KEY`. Only the hash is stored, never the key. Revoking drops the GSI1 keys (so the
hash no longer resolves) and sets `expires_at`, after which the cleanup sweep removes the item."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from memlayer.lazy_model import LazyModel
from memlayer.models import Timestamp
from memlayer.storage.dynamo_base import DynamoBase, _n, _s, user_pk

KEY_PREFIX = "KEY#"
API_KEY_GSI_PREFIX = "APIKEY#"
# How long a revoked key stays listed (as revoked) before the sweep removes it.
REVOKED_KEY_RETENTION_SECONDS = 30 * 86_400
# At most one last-used write per key per this many seconds.
TOUCH_INTERVAL_SECONDS = 60

# What an item is, by its `type` attribute or, for items without one, its sort key.
_KIND_BY_TYPE = {
    "memory": "memories",
    "vector": "vectors",
    "job": "jobs",
    "upload": "uploads",
    "api_key": "api_keys",
    "connection": "connections",
    "capture": "captures",
    "idempotency": "idempotency",
    "change": "changes",
}
_KIND_BY_SK_PREFIX = (
    ("MEM#", "memories"),
    ("VEC#", "vectors"),
    ("JOB#", "jobs"),
    ("UPL#", "uploads"),
    (KEY_PREFIX, "api_keys"),
    ("CONN#", "connections"),
    ("CAP#", "captures"),
    ("IDEM#", "idempotency"),
    ("CHG#", "changes"),
    ("DAY#", "counters"),
    ("RATE#", "rate"),
    ("PROFILE", "profile"),
)
ITEM_KINDS = (
    "memories",
    "vectors",
    "jobs",
    "uploads",
    "api_keys",
    "connections",
    "captures",
    "idempotency",
    "changes",
    "counters",
    "rate",
    "profile",
    "other",
)


def item_kind(item: dict[str, Any]) -> str:
    kind = _KIND_BY_TYPE.get(item.get("type", {}).get("S", ""))
    if kind:
        return kind
    sk = item.get("SK", {}).get("S", "")
    return next((k for prefix, k in _KIND_BY_SK_PREFIX if sk.startswith(prefix)), "other")


class ApiKeyRecord(LazyModel):
    """An API key as storage keeps it (the key itself is never stored, only its hash)."""

    user_id: str
    id: str
    name: str
    scopes: list[str]
    prefix: str
    created_at: Timestamp
    last_used_at: Timestamp | None = None
    revoked: bool = False
    revoked_at: Timestamp | None = None


class AccountsStore(Protocol):
    # API keys
    async def create_api_key(self, record: ApiKeyRecord, key_hash: str) -> None: ...

    async def list_api_keys(self, user_id: str) -> list[ApiKeyRecord]: ...

    async def get_api_key(self, user_id: str, key_id: str) -> ApiKeyRecord | None: ...

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    async def revoke_api_key(self, user_id: str, key_id: str, now: datetime) -> bool: ...

    async def delete_api_key(self, user_id: str, key_id: str) -> bool: ...

    async def touch_api_key(self, user_id: str, key_id: str, now: datetime) -> bool: ...

    # erasure and admin counts
    async def erase_user(self, user_id: str) -> dict[str, int]: ...

    async def count_items(
        self, *, time_budget_seconds: float = 20.0
    ) -> tuple[dict[str, int], int, bool]: ...

    async def approximate_item_count(self) -> int | None: ...


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _number(attr: dict[str, Any] | None) -> float | None:
    return float(attr["N"]) if attr and "N" in attr else None


class DynamoAccounts(DynamoBase):
    # ------------------------------------------------------------------ API keys
    @staticmethod
    def _api_key_of(item: dict[str, Any]) -> ApiKeyRecord:
        record = ApiKeyRecord.model_validate_json(item["data"]["S"])
        update: dict[str, Any] = {"revoked": item.get("revoked", {}).get("BOOL", False)}
        last_used = _number(item.get("last_used_at"))
        if last_used is not None:
            update["last_used_at"] = datetime.fromtimestamp(last_used, UTC)
        return record.model_copy(update=update)

    async def create_api_key(self, record: ApiKeyRecord, key_hash: str) -> None:
        await self._run(
            self.client.put_item,
            TableName=self.table,
            Item={
                "PK": _s(user_pk(record.user_id)),
                "SK": _s(KEY_PREFIX + record.id),
                "GSI1PK": _s(API_KEY_GSI_PREFIX + key_hash),
                "GSI1SK": _s("KEY"),
                "type": _s("api_key"),
                "key_hash": _s(key_hash),
                "revoked": {"BOOL": False},
                "data": _s(record.model_dump_json()),
            },
            ConditionExpression="attribute_not_exists(PK)",
        )

    async def list_api_keys(self, user_id: str) -> list[ApiKeyRecord]:
        items = await self._run(self._query_all, user_id=user_id, prefix=KEY_PREFIX)
        return [self._api_key_of(item) for item in items]

    async def get_api_key(self, user_id: str, key_id: str) -> ApiKeyRecord | None:
        resp = await self._run(
            self.client.get_item,
            TableName=self.table,
            Key={"PK": _s(user_pk(user_id)), "SK": _s(KEY_PREFIX + key_id)},
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return self._api_key_of(item) if item else None

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The live key with this hash. GSI reads are eventually consistent, so the base item
        is re-read consistently: a key revoked a moment ago is refused at once."""
        resp = await self._run(
            self.client.query,
            TableName=self.table,
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :h AND GSI1SK = :k",
            ExpressionAttributeValues={
                ":h": _s(API_KEY_GSI_PREFIX + key_hash),
                ":k": _s("KEY"),
            },
            Limit=2,
        )
        for found in resp.get("Items", []):
            current = await self._run(
                self.client.get_item,
                TableName=self.table,
                Key={"PK": found["PK"], "SK": found["SK"]},
                ConsistentRead=True,
            )
            item = current.get("Item")
            if not item or item.get("revoked", {}).get("BOOL", False):
                continue
            if not hmac.compare_digest(item.get("key_hash", {}).get("S", ""), key_hash):
                continue
            return self._api_key_of(item)
        return None

    async def revoke_api_key(self, user_id: str, key_id: str, now: datetime) -> bool:
        """Marks the key revoked and drops it from the hash index; False if there is no such
        key of this user. Revoking twice is harmless."""
        record = await self.get_api_key(user_id, key_id)
        if record is None:
            return False
        if record.revoked:
            return True
        revoked = record.model_copy(update={"revoked": True, "revoked_at": now})
        try:
            await self._run(
                self.client.update_item,
                TableName=self.table,
                Key={"PK": _s(user_pk(user_id)), "SK": _s(KEY_PREFIX + key_id)},
                UpdateExpression=(
                    "SET revoked = :t, #d = :d, expires_at = :exp REMOVE GSI1PK, GSI1SK"
                ),
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeNames={"#d": "data"},
                ExpressionAttributeValues={
                    ":t": {"BOOL": True},
                    ":d": _s(revoked.model_dump_json()),
                    ":exp": _n(int(now.timestamp()) + REVOKED_KEY_RETENTION_SECONDS),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def delete_api_key(self, user_id: str, key_id: str) -> bool:
        resp = await self._run(
            self.client.delete_item,
            TableName=self.table,
            Key={"PK": _s(user_pk(user_id)), "SK": _s(KEY_PREFIX + key_id)},
            ReturnValues="ALL_OLD",
        )
        return bool(resp.get("Attributes"))

    async def touch_api_key(self, user_id: str, key_id: str, now: datetime) -> bool:
        """Records a use; at most one write per key a minute (the condition drops the rest,
        also across containers). Never resurrects a deleted or revoked key."""
        stamp = int(now.timestamp())
        try:
            await self._run(
                self.client.update_item,
                TableName=self.table,
                Key={"PK": _s(user_pk(user_id)), "SK": _s(KEY_PREFIX + key_id)},
                UpdateExpression="SET last_used_at = :now",
                ConditionExpression=(
                    "attribute_exists(PK) AND revoked = :f AND "
                    "(attribute_not_exists(last_used_at) OR last_used_at < :before)"
                ),
                ExpressionAttributeValues={
                    ":now": _n(stamp),
                    ":before": _n(stamp - TOUCH_INTERVAL_SECONDS),
                    ":f": {"BOOL": False},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    # ------------------------------------------------------------------ erase
    def _batch_delete(self, keys: list[dict[str, Any]]) -> None:
        """Deletes up to 25 keys, retrying what DynamoDB leaves unprocessed."""
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])

    def _partition(self, user_id: str) -> list[dict[str, Any]]:
        request = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": _s(user_pk(user_id))},
            "ProjectionExpression": "PK, SK, #t",
            "ExpressionAttributeNames": {"#t": "type"},
            "ConsistentRead": True,
        }
        return [item for page in self._pages(request) for item in page]

    async def erase_user(self, user_id: str) -> dict[str, int]:
        """Deletes every item in the user's partition; returns the counts by kind.

        Everything a user owns lives in their partition (API keys, connections and open
        uploads are found through GSI1 on those same items; the user's rate windows are in
        it too). Passes repeat until a consistent query finds nothing, so items written while
        the erase ran go as well."""
        counts = dict.fromkeys(ITEM_KINDS, 0)
        limit = asyncio.Semaphore(8)

        async def delete(chunk: list[dict[str, Any]]) -> None:
            async with limit:
                await self._run(
                    self._batch_delete, keys=[{"PK": i["PK"], "SK": i["SK"]} for i in chunk]
                )
            for item in chunk:
                counts[item_kind(item)] += 1

        for _ in range(5):
            items = await self._run(self._partition, user_id=user_id)
            if not items:
                break
            await asyncio.gather(*(delete(chunk) for chunk in _chunks(items, 25)))
        return counts

    # ------------------------------------------------------------------ admin counts
    def _scan_count(
        self, segment: int, total: int, deadline: float
    ) -> tuple[dict[str, int], set[str], bool]:
        counts: dict[str, int] = {}
        users: set[str] = set()
        request: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": "PK, SK, #t",
            "ExpressionAttributeNames": {"#t": "type"},
            "Segment": segment,
            "TotalSegments": total,
        }
        while True:
            resp = self.client.scan(**request)
            for item in resp.get("Items", []):
                kind = item_kind(item)
                counts[kind] = counts.get(kind, 0) + 1
                if kind == "memories":
                    users.add(item["PK"]["S"])
            if "LastEvaluatedKey" not in resp:
                return counts, users, True
            if time.monotonic() > deadline:
                return counts, users, False
            request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    async def count_items(
        self, *, time_budget_seconds: float = 20.0
    ) -> tuple[dict[str, int], int, bool]:
        """Counts items by kind and the users holding memories, with a parallel scan bounded
        by a time budget. Returns (counts, users, complete)."""
        deadline = time.monotonic() + time_budget_seconds
        segments = 4
        parts = await asyncio.gather(
            *(
                self._run(self._scan_count, segment=s, total=segments, deadline=deadline)
                for s in range(segments)
            )
        )
        counts = dict.fromkeys(ITEM_KINDS, 0)
        users: set[str] = set()
        complete = True
        for part_counts, part_users, part_complete in parts:
            for kind, n in part_counts.items():
                counts[kind] = counts.get(kind, 0) + n
            users |= part_users
            complete = complete and part_complete
        return counts, len(users), complete

    async def approximate_item_count(self) -> int | None:
        """DynamoDB's own item count (refreshed about every six hours)."""
        try:
            resp = await self._run(self.client.describe_table, TableName=self.table)
        except Exception:
            return None
        count = resp.get("Table", {}).get("ItemCount")
        return int(count) if count is not None else None
