"""WebSocket connections (who listens for a user's job progress) in DynamoDB (a mixin of
DynamoStore), and their part of the Store interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from memlayer.storage.dynamo_base import DynamoBase, _n, _s, user_pk


@dataclass(frozen=True)
class Connection:
    """A WebSocket subscription: it ends at `expires_at` (the credential's expiry at the
    latest) or when the API key it was opened with (`key_id`) is revoked."""

    connection_id: str
    expires_at: int
    key_id: str | None = None


class ConnectionsStore(Protocol):
    async def put_connection(
        self, user_id: str, connection_id: str, expires_at: int, *, key_id: str | None = None
    ) -> None: ...

    async def delete_connection(self, connection_id: str) -> str | None: ...

    async def list_connections(self, user_id: str) -> list[Connection]: ...


class DynamoConnections(DynamoBase):
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
