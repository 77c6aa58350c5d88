"""The base of every DynamoDB access mixin: key helpers, the thread hop, paging."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from memlayer.ids import is_id
from memlayer.storage.errors import InvalidCursor
from memlayer.storage.turn_reads import TurnReads

T = TypeVar("T")


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def memory_sk(memory_id: str) -> str:
    return f"MEM#{memory_id}"


PROFILE_SK = "PROFILE"
CHANGE_PREFIX = "CHG#"


def day_sk(moment: datetime) -> str:
    return f"DAY#{moment:%Y-%m-%d}"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": sort_key}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, prefix: str) -> str:
    """The cursor only ever names a sort key; the partition always comes from the caller's
    identity, so a forged cursor cannot reach another user's items."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))["k"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidCursor(cursor) from None
    if not isinstance(key, str) or not key.startswith(prefix) or not is_id(key[len(prefix) :]):
        raise InvalidCursor(cursor)
    return key


class DynamoBase:
    """What every DynamoDB access mixin builds on: the table, the client, a thread hop."""

    def __init__(self, table_name: str, client: Any) -> None:
        self.table = table_name
        self.client = client
        # `_get`'s reads of one loop turn: one BatchGetItem (a key asked twice read once)
        self._point_reads: TurnReads[tuple[str, str], dict[str, Any] | None] = TurnReads(
            self._read_points, self._read_point
        )

    async def _run(self, fn: Callable[..., T], **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, **kwargs)

    def _pages(self, request: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        request = dict(request)
        while True:
            resp = self.client.query(**request)
            yield resp.get("Items", [])
            if "LastEvaluatedKey" not in resp:
                return
            request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    async def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        """One item by key, strongly consistent (reads follow the caller's own writes); point
        reads asked for in the same turn of the event loop are made together (`TurnReads`)."""
        return await self._point_reads.read((pk, sk))

    async def _read_points(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any] | None]:
        items = await self._run(self._batch_get_keys, keys=keys)
        found = {(i["PK"]["S"], i["SK"]["S"]): i for i in items}
        return {key: found.get(key) for key in keys}

    async def _read_point(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return await self._run(self._get_one, pk=key[0], sk=key[1])

    def _get_one(self, pk: str, sk: str) -> dict[str, Any] | None:
        resp = self.client.get_item(
            TableName=self.table, Key={"PK": _s(pk), "SK": _s(sk)}, ConsistentRead=True
        )
        item: dict[str, Any] | None = resp.get("Item")
        return item

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """Put/delete requests in batches of 25, retrying what DynamoDB leaves unprocessed."""
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table: requests[start : start + 25]}
            for attempt in range(10):
                pending = (
                    self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                )
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 2.0))
            else:
                raise RuntimeError("DynamoDB left items unprocessed")

    def _batch_get(self, pk: str, sort_keys: list[str]) -> list[dict[str, Any]]:
        """Items of one partition by sort key (consistent), retrying unprocessed keys."""
        return self._batch_get_keys([(pk, sk) for sk in sort_keys])

    def _batch_get_keys(self, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Items by (PK, SK) (consistent), retrying unprocessed keys; a key given twice is
        read once (BatchGetItem refuses duplicates)."""
        unique = list(dict.fromkeys(keys))
        items: list[dict[str, Any]] = []
        for start in range(0, len(unique), 100):
            chunk = [{"PK": _s(pk), "SK": _s(sk)} for pk, sk in unique[start : start + 100]]
            pending: dict[str, Any] = {self.table: {"Keys": chunk, "ConsistentRead": True}}
            for attempt in range(10):
                resp = self.client.batch_get_item(RequestItems=pending)
                items += resp.get("Responses", {}).get(self.table, [])
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 2.0))
            else:
                raise RuntimeError("DynamoDB left keys unprocessed")
        return items

    def _query_all(
        self, user_id: str, prefix: str, attributes: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """Every item of the user's whose sort key starts with `prefix`; with `attributes`,
        only those (DynamoDB reads, and charges, the whole items either way, but the answer
        is smaller to send and to parse)."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": _s(user_pk(user_id)), ":prefix": _s(prefix)},
        }
        if attributes:
            names = {f"#a{i}": name for i, name in enumerate(attributes)}
            request["ProjectionExpression"] = ", ".join(names)
            request["ExpressionAttributeNames"] = names
        return [item for page in self._pages(request) for item in page]
