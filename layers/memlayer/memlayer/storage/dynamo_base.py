"""The base of every DynamoDB access mixin: key helpers, the thread hop, paging."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from memlayer.ids import is_id
from memlayer.storage.errors import InvalidCursor

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
        # `_get`'s reads waiting for the end of the current loop turn, per event loop (the
        # local cloud runs functions on several threads, each with its own loop)
        self._point_reads: dict[
            asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Future[dict[str, Any] | None]]
        ] = {}
        self._point_reading: set[asyncio.Task[None]] = set()

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
        """One item by key, strongly consistent (reads follow the caller's own writes).

        Point reads asked for in the same turn of the event loop (the records of a batch,
        each reading its memory and job) are made together: one BatchGetItem instead of a
        GetItem each (a key asked for twice is read once). If that call fails, every key is
        read on its own, so each caller gets its own outcome."""
        loop = asyncio.get_running_loop()
        pending = self._point_reads.get(loop)
        if pending is None:
            pending = self._point_reads[loop] = {}
            loop.call_soon(self._read_points, loop)
        future = pending.get((pk, sk))
        if future is None:
            future = pending[(pk, sk)] = loop.create_future()
        item: dict[str, Any] | None = await asyncio.shield(future)
        return item

    def _read_points(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._point_reads.pop(loop)
        task = loop.create_task(self._read_points_now(pending))
        self._point_reading.add(task)  # referenced until done, so it is not collected
        task.add_done_callback(self._point_reading.discard)

    async def _read_points_now(
        self, pending: dict[tuple[str, str], asyncio.Future[dict[str, Any] | None]]
    ) -> None:
        items = None
        if len(pending) > 1:
            # If the batch fails, each key is read on its own below: each caller then gets
            # its own outcome (and the error, if it is one, from its own read).
            with contextlib.suppress(Exception):
                items = await self._run(self._batch_get_keys, keys=list(pending))
        if items is None:
            await asyncio.gather(*(self._read_point_alone(k, f) for k, f in pending.items()))
            return
        found = {(i["PK"]["S"], i["SK"]["S"]): i for i in items}
        for key, future in pending.items():
            future.set_result(found.get(key))

    async def _read_point_alone(
        self, key: tuple[str, str], future: asyncio.Future[dict[str, Any] | None]
    ) -> None:
        try:
            future.set_result(await self._run(self._get_one, pk=key[0], sk=key[1]))
        except Exception as exc:
            future.set_exception(exc)

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
