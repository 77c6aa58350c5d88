"""DynamoDB access for the pipeline: WebSocket connections, pending captures, the user's tag
vocabulary (a mixin of DynamoStore) and its part of the Store interface."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

from memlayer.storage.dynamo_base import PROFILE_SK, DynamoBase, _n, _s, user_pk


@dataclass(frozen=True)
class PendingCapture:
    """A captured prompt waiting for its response (keyed by provider + conversation)."""

    user_id: str
    provider: str
    conversation_id: str
    capture_id: str
    text: str
    url: str | None
    message_id: str | None
    captured_at: str
    expires_at: int


@dataclass(frozen=True)
class Connection:
    """A WebSocket subscription: it ends at `expires_at` (the credential's expiry at the
    latest) or when the API key it was opened with (`key_id`) is revoked."""

    connection_id: str
    expires_at: int
    key_id: str | None = None


def capture_sk(provider: str, conversation_id: str) -> str:
    return f"CAP#{provider}#{conversation_id}"


class PipelineStore(Protocol):
    async def put_connection(
        self, user_id: str, connection_id: str, expires_at: int, *, key_id: str | None = None
    ) -> None: ...

    async def delete_connection(self, connection_id: str) -> str | None: ...

    async def list_connections(self, user_id: str) -> list[Connection]: ...

    async def put_capture(self, capture: PendingCapture) -> PendingCapture | None: ...

    async def get_capture(
        self, user_id: str, provider: str, conversation_id: str
    ) -> PendingCapture | None: ...

    async def claim_capture(
        self, user_id: str, provider: str, conversation_id: str, capture_id: str, lease: int
    ) -> bool: ...

    async def take_capture(
        self, user_id: str, provider: str, conversation_id: str, capture_id: str
    ) -> bool: ...

    async def add_user_tags(self, user_id: str, tags: list[str]) -> None: ...

    async def get_user_tags(self, user_id: str) -> list[str]: ...


class DynamoPipeline(DynamoBase):
    # --------------------------------------------------------------- WebSocket connections
    async def put_connection(
        self, user_id: str, connection_id: str, expires_at: int, *, key_id: str | None = None
    ) -> None:
        item = {
            "PK": _s(user_pk(user_id)),
            "SK": _s(f"CONN#{connection_id}"),
            "GSI1PK": _s(f"CONN#{connection_id}"),
            "GSI1SK": _s("CONN"),
            "type": _s("connection"),
            "expires_at": _n(expires_at),
        }
        if key_id is not None:
            item["key_id"] = _s(key_id)
        await self._run(self.client.put_item, TableName=self.table, Item=item)

    async def delete_connection(self, connection_id: str) -> str | None:
        """Removes a connection wherever it is; returns its user id (None if unknown)."""
        resp = await self._run(
            self.client.query,
            TableName=self.table,
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :c",
            ExpressionAttributeValues={":c": _s(f"CONN#{connection_id}")},
        )
        owner = None
        for item in resp.get("Items", []):
            owner = item["PK"]["S"].removeprefix("USER#")
            await self._run(
                self.client.delete_item,
                TableName=self.table,
                Key={"PK": item["PK"], "SK": item["SK"]},
            )
        return owner

    async def list_connections(self, user_id: str) -> list[Connection]:
        items = await self._run(self._query_all, user_id=user_id, prefix="CONN#")
        return [
            Connection(
                connection_id=item["SK"]["S"].removeprefix("CONN#"),
                expires_at=int(item["expires_at"]["N"]),
                key_id=item["key_id"]["S"] if "key_id" in item else None,
            )
            for item in items
        ]

    # --------------------------------------------------------------- pending captures
    async def put_capture(self, capture: PendingCapture) -> PendingCapture | None:
        """Stores the pending prompt of a conversation; returns the one it replaced, if any."""
        resp = await self._run(
            self.client.put_item,
            TableName=self.table,
            Item={
                "PK": _s(user_pk(capture.user_id)),
                "SK": _s(capture_sk(capture.provider, capture.conversation_id)),
                "type": _s("capture"),
                "capture_id": _s(capture.capture_id),
                "data": _s(json.dumps(capture.__dict__)),
                "expires_at": _n(capture.expires_at),
            },
            ReturnValues="ALL_OLD",
        )
        old = resp.get("Attributes")
        return PendingCapture(**json.loads(old["data"]["S"])) if old else None

    async def get_capture(
        self, user_id: str, provider: str, conversation_id: str
    ) -> PendingCapture | None:
        item = await self._get(user_pk(user_id), capture_sk(provider, conversation_id))
        return PendingCapture(**json.loads(item["data"]["S"])) if item else None

    async def claim_capture(
        self, user_id: str, provider: str, conversation_id: str, capture_id: str, lease: int
    ) -> bool:
        """Leases the pending capture to one caller for `lease` seconds, so concurrent pairers
        and flushers cannot both turn it into a memory; a crashed holder's lease runs out."""
        now = int(time.time())
        try:
            await self._run(
                self.client.update_item,
                TableName=self.table,
                Key={"PK": _s(user_pk(user_id)), "SK": _s(capture_sk(provider, conversation_id))},
                UpdateExpression="SET claimed_until = :until",
                ConditionExpression="capture_id = :c AND "
                "(attribute_not_exists(claimed_until) OR claimed_until < :now)",
                ExpressionAttributeValues={
                    ":c": _s(capture_id),
                    ":now": _n(now),
                    ":until": _n(now + lease),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def take_capture(
        self, user_id: str, provider: str, conversation_id: str, capture_id: str
    ) -> bool:
        """Deletes the pending capture only if it is still `capture_id`: exactly one of the
        racing pairers/flushers wins it."""
        try:
            await self._run(
                self.client.delete_item,
                TableName=self.table,
                Key={"PK": _s(user_pk(user_id)), "SK": _s(capture_sk(provider, conversation_id))},
                ConditionExpression="capture_id = :c",
                ExpressionAttributeValues={":c": _s(capture_id)},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    # --------------------------------------------------------------- tag vocabulary
    async def add_user_tags(self, user_id: str, tags: list[str]) -> None:
        if not tags:
            return
        try:
            await self._run(
                self.client.update_item,
                TableName=self.table,
                Key={"PK": _s(user_pk(user_id)), "SK": _s(PROFILE_SK)},
                UpdateExpression="ADD tag_vocabulary :t",
                # An erased user's profile is gone; a late worker must not recreate it.
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeValues={":t": {"SS": sorted(set(tags))}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return

    async def get_user_tags(self, user_id: str) -> list[str]:
        resp: dict[str, Any] = await self._run(
            self.client.get_item,
            TableName=self.table,
            Key={"PK": _s(user_pk(user_id)), "SK": _s(PROFILE_SK)},
            ProjectionExpression="tag_vocabulary",
        )
        return sorted(resp.get("Item", {}).get("tag_vocabulary", {}).get("SS", []))
