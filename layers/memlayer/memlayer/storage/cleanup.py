"""DynamoDB access for the cleanup sweep (a mixin of DynamoStore) and its part of the Store
interface.

The sweep does not rely on TTL (DynamoDB deletes expired items lazily, moto never): it scans
for `expires_at < now` and deletes each item only if it still has the `expires_at` (or status)
it was found with, so two sweeps running at once each delete an item at most once between them
and count only what they deleted. Expired captures and uploads go back to the sweep as records:
it flushes or purges them (claiming each first)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from memlayer.storage.accounts import item_kind
from memlayer.storage.captures import PendingCapture, capture_sk
from memlayer.storage.dynamo_base import DynamoBase, _n, _s, user_pk
from memlayer.storage.uploads import UploadRecord

# Deleted by `purge_expired` once `expires_at` has passed.
EXPIRING_KINDS = ("jobs", "connections", "idempotency", "rate", "counters", "api_keys", "changes")


@dataclass(frozen=True)
class ExpiredFound:
    """What one `purge_expired` pass did and found: counts of the expired items it deleted
    (by kind), and the expired captures and uploads, which the sweep itself handles."""

    deleted: dict[str, int]
    captures: list[PendingCapture] = field(default_factory=list)
    uploads: list[UploadRecord] = field(default_factory=list)


class CleanupStore(Protocol):
    async def purge_expired(self, now: datetime) -> ExpiredFound:
        """Deletes the expired items of `EXPIRING_KINDS` (only revoked API keys expire), each
        only if it still expires as found; returns the counts and the expired captures and
        uploads."""
        ...

    async def claim_expired_capture(
        self, capture: PendingCapture, claim: str, now: int, stale_after: int
    ) -> bool:
        """Claims an expired capture for one sweep, if it is still the one found (same
        capture id and expiry) and no live claim of another sweep is on it."""
        ...

    async def claim_upload(
        self, user_id: str, upload_id: str, version: int, claim: str, now: int, stale_after: int
    ) -> bool: ...

    async def delete_upload_if_unchanged(
        self, user_id: str, upload_id: str, version: int, status: str
    ) -> bool: ...


class DynamoCleanup(DynamoBase):
    def _scan_all(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        request = dict(request)
        items: list[dict[str, Any]] = []
        while True:
            resp = self.client.scan(**request)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return items
            request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    async def purge_expired(self, now: datetime) -> ExpiredFound:
        """One scan for `expires_at < now`: the expiring kinds are deleted (conditionally,
        in parallel), the expired captures and uploads returned as records."""
        items = await self._run(
            self._scan_all,
            request={
                "TableName": self.table,
                "FilterExpression": "expires_at < :now",
                "ProjectionExpression": "PK, SK, #t, expires_at, revoked, #d",
                "ExpressionAttributeNames": {"#t": "type", "#d": "data"},
                "ExpressionAttributeValues": {":now": _n(int(now.timestamp()))},
            },
        )
        found = ExpiredFound(deleted=dict.fromkeys(EXPIRING_KINDS, 0))
        limit = asyncio.Semaphore(16)

        async def delete(item: dict[str, Any], kind: str) -> None:
            async with limit:
                if await self._delete_if_expires(item):
                    found.deleted[kind] += 1

        deletes = []
        for item in items:
            kind = item_kind(item)
            if kind == "captures":
                found.captures.append(PendingCapture(**json.loads(item["data"]["S"])))
            elif kind == "uploads" and "data" in item:
                found.uploads.append(UploadRecord.model_validate_json(item["data"]["S"]))
            elif kind == "api_keys" and not item.get("revoked", {}).get("BOOL", False):
                continue  # only revoked keys expire
            elif kind in EXPIRING_KINDS:
                deletes.append(delete(item, kind))
        await asyncio.gather(*deletes)
        return found

    async def _delete_if_expires(self, item: dict[str, Any]) -> bool:
        """Deletes the item if it still expires when it did when found (it was not renewed
        or replaced since); False if it is gone or changed."""
        try:
            await self._run(
                self.client.delete_item,
                TableName=self.table,
                Key={"PK": item["PK"], "SK": item["SK"]},
                ConditionExpression="expires_at = :e",
                ExpressionAttributeValues={":e": item["expires_at"]},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def _claim(
        self,
        key: dict[str, Any],
        condition: str,
        values: dict[str, Any],
        claim: str,
        now: int,
        stale_after: int,
    ) -> bool:
        """Marks an item as being handled by `claim` if `condition` holds and no live claim
        of another sweep is on it: of two sweeps, exactly one wins an item. A claim older than
        `stale_after` seconds (its sweep died) can be taken over."""
        try:
            await self._run(
                self.client.update_item,
                TableName=self.table,
                Key=key,
                UpdateExpression="SET #c = :c, #ca = :now",
                ConditionExpression=(
                    f"({condition}) AND (attribute_not_exists(#c) OR #ca < :stale)"
                ),
                ExpressionAttributeNames={"#c": "cleanup_claim", "#ca": "cleanup_claimed_at"},
                ExpressionAttributeValues={
                    **values,
                    ":c": _s(claim),
                    ":now": _n(now),
                    ":stale": _n(now - stale_after),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def claim_expired_capture(
        self, capture: PendingCapture, claim: str, now: int, stale_after: int
    ) -> bool:
        key = {
            "PK": _s(user_pk(capture.user_id)),
            "SK": _s(capture_sk(capture.provider, capture.conversation_id)),
        }
        condition = "expires_at = :e AND capture_id = :cid"
        values = {":e": _n(capture.expires_at), ":cid": _s(capture.capture_id)}
        return await self._claim(key, condition, values, claim, now, stale_after)

    async def claim_upload(
        self, user_id: str, upload_id: str, version: int, claim: str, now: int, stale_after: int
    ) -> bool:
        """Claims an upload record that is still at `version`."""
        key = {"PK": _s(user_pk(user_id)), "SK": _s(f"UPL#{upload_id}")}
        return await self._claim(key, "version = :v", {":v": _n(version)}, claim, now, stale_after)

    async def delete_upload_if_unchanged(
        self, user_id: str, upload_id: str, version: int, status: str
    ) -> bool:
        """Deletes an upload record only if it is still at `version` in `status`."""
        try:
            await self._run(
                self.client.delete_item,
                TableName=self.table,
                Key={"PK": _s(user_pk(user_id)), "SK": _s(f"UPL#{upload_id}")},
                ConditionExpression="#v = :v AND #st = :status",
                ExpressionAttributeNames={"#v": "version", "#st": "status"},
                ExpressionAttributeValues={":v": _n(version), ":status": _s(status)},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True
