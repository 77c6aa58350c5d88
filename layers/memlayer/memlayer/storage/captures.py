"""Pending captures: a captured prompt waiting for its response, in DynamoDB (a mixin of
DynamoStore), and their part of the Store interface."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Protocol

from memlayer.storage.dynamo_base import DynamoBase, _n, _s, user_pk


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


def capture_sk(provider: str, conversation_id: str) -> str:
    return f"CAP#{provider}#{conversation_id}"


class CapturesStore(Protocol):
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


class DynamoCaptures(DynamoBase):
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
