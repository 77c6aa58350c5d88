"""DynamoDB single-table implementation of `Store`. Access patterns: docs/data-model.md.

boto3 is synchronous, so every call runs in a worker thread (`asyncio.to_thread`) and never
blocks the event loop. Records are kept as a JSON document (`data`) plus the few top-level
attributes that key conditions and filters need, so DynamoDB's number and empty-value quirks
stay in this file."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from pydantic import TypeAdapter

from memlayer import aws
from memlayer.ids import id_floor, is_id, new_id
from memlayer.models import JobRecord, Limits, ListQuery, MemoryRecord, UsageCounts
from memlayer.settings import get_settings
from memlayer.storage import index_snapshot
from memlayer.storage.accounts import DynamoAccounts
from memlayer.storage.base import (
    CHANGE_LOG_TTL,
    IdempotencyClaim,
    Profile,
    StoredVector,
    check_own_job,
    check_own_vector,
)
from memlayer.storage.captures import DynamoCaptures
from memlayer.storage.cleanup import DynamoCleanup
from memlayer.storage.connections import DynamoConnections
from memlayer.storage.dynamo_base import (
    CHANGE_PREFIX,
    PROFILE_SK,
    DynamoBase,
    _n,
    _s,
    day_sk,
    decode_cursor,
    encode_cursor,
    memory_sk,
    user_pk,
)
from memlayer.storage.errors import (
    IdempotencyRecord,
    IdempotentReplay,
    Limit,
    LimitReached,
    VersionConflict,
    seconds_to_midnight,
)
from memlayer.storage.tags import DynamoTags
from memlayer.storage.uploads import DynamoUploads

IDEMPOTENCY_TTL = timedelta(hours=24)
_RECORDS = TypeAdapter(list[MemoryRecord])
TRANSACT_ATTEMPTS = 8
_MAX_KNOWN_SIZES = 10_000
# The last `tat` each rate key had here: which of take_rate's two writes to try first.
_RATE_HINTS: dict[str, float] = {}
_MAX_RATE_HINTS = 10_000


def _vector_item(user_id: str, vector: StoredVector) -> dict[str, Any]:
    return {
        "PK": _s(user_pk(user_id)),
        "SK": _s(f"VEC#{vector.memory_id}"),
        "type": _s("vector"),
        "space": _s(vector.space),
        "content_hash": _s(vector.content_hash),
        "v": {"B": vector.vector},
    }


class IndexVersion(NamedTuple):
    generation: str  # PROFILE.generation: new after an erase
    version: int  # PROFILE.data_version: bumped by every memory write
    memories: int  # PROFILE.memories


def _remember_rate(key: str, tat: float) -> None:
    if len(_RATE_HINTS) >= _MAX_RATE_HINTS:
        _RATE_HINTS.clear()
    _RATE_HINTS[key] = tat


class DynamoStore(
    DynamoCaptures,
    DynamoConnections,
    DynamoTags,
    DynamoUploads,
    DynamoAccounts,
    DynamoCleanup,
    DynamoBase,
):
    backend = "dynamodb"

    def __init__(self, table_name: str, client: Any) -> None:
        super().__init__(table_name, client)
        self._known_sizes: dict[tuple[str, str, int], int] = {}

    @classmethod
    def from_settings(cls) -> DynamoStore:
        return cls(get_settings().table_name, aws.client("dynamodb"))

    async def ping(self) -> bool:
        try:
            await self._run(self.client.describe_table, TableName=self.table)
        except Exception:
            return False
        return True

    # ------------------------------------------------------------------ memories
    def _memory_item(self, record: MemoryRecord) -> dict[str, Any]:
        item: dict[str, Any] = {
            "PK": _s(user_pk(record.user_id)),
            "SK": _s(memory_sk(record.id)),
            "type": _s("memory"),
            "kind": _s(record.kind),
            "status": _s(record.status),
            "version": _n(record.version),
            "data": _s(record.model_dump_json()),
        }
        if record.tags:
            item["tags"] = {"SS": record.tags}
        if record.source.provider:
            item["provider"] = _s(record.source.provider)
        return item

    @staticmethod
    def _memory_of(item: dict[str, Any]) -> MemoryRecord:
        return MemoryRecord.model_validate_json(item["data"]["S"])

    def _remember_size(self, record: MemoryRecord) -> MemoryRecord:
        """Notes the size a memory has at its version. A version is written once (each write
        bumps it, ids are never reused), so `save_memory` of a record read or written here
        knows the stored size for its usage delta without reading the memory again; the
        write's condition on the version makes sure the stored copy is that one."""
        if len(self._known_sizes) >= _MAX_KNOWN_SIZES:
            self._known_sizes.clear()
        self._known_sizes[(record.user_id, record.id, record.version)] = record.size_bytes
        return record

    def _change_put(self, user_id: str, memory_id: str) -> dict[str, Any]:
        """A change-log entry, written in the same transaction as the memory change, so a
        warm search index can catch up on what changed instead of reloading everything."""
        return {
            "Put": {
                "TableName": self.table,
                "Item": {
                    "PK": _s(user_pk(user_id)),
                    "SK": _s(f"{CHANGE_PREFIX}{new_id()}"),
                    "type": _s("change"),
                    "memory_id": _s(memory_id),
                    "expires_at": _n(int(time.time() + CHANGE_LOG_TTL.total_seconds())),
                },
            }
        }

    async def changed_memories(
        self, user_id: str, since: datetime, *, limit: int
    ) -> list[str] | None:
        """Ids of the memories changed (created, edited, enriched, deleted) since `since`,
        oldest change first and each once; None when there are more than `limit` changes."""
        request = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :since AND :end",
            "ExpressionAttributeValues": {
                ":pk": _s(user_pk(user_id)),
                ":since": _s(f"{CHANGE_PREFIX}{id_floor(since)}"),
                ":end": _s(f"{CHANGE_PREFIX}~"),
            },
            "ProjectionExpression": "memory_id",
            "ConsistentRead": True,
            "Limit": limit + 1,
        }

        def read() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = []
            for page in self._pages(request):
                items += page
                if len(items) > limit:
                    return None
            return items

        items = await self._run(read)
        if items is None:
            return None
        return list(dict.fromkeys(item["memory_id"]["S"] for item in items))

    async def get_memories(
        self, user_id: str, memory_ids: list[str]
    ) -> tuple[dict[str, MemoryRecord], dict[str, StoredVector]]:
        """These memories and their vectors (consistent reads); missing ones are left out."""
        keys = [
            sk
            for memory_id in memory_ids
            if is_id(memory_id)
            for sk in (memory_sk(memory_id), f"VEC#{memory_id}")
        ]
        items = await self._run(self._batch_get, pk=user_pk(user_id), sort_keys=keys)
        records = {
            r.id: self._remember_size(r)
            for r in (self._memory_of(i) for i in items if i["SK"]["S"].startswith("MEM#"))
        }
        vectors = [self._vector_of(i) for i in items if i["SK"]["S"].startswith("VEC#")]
        return records, {v.memory_id: v for v in vectors}

    def _usage_update(
        self,
        user_id: str,
        *,
        memories: int,
        size: int,
        max_memories: int = 0,
        max_bytes: int = 0,
    ) -> dict[str, Any]:
        """Counts a change in the user's memories and bytes; the condition enforces the limits
        atomically, so parallel creates can never overshoot them."""
        conditions = []
        values: dict[str, Any] = {
            ":m": _n(memories),
            ":b": _n(size),
            ":one": _n(1),
            ":gen": _s(new_id()),
        }
        if max_memories and memories > 0:
            conditions.append("(attribute_not_exists(#m) OR #m < :maxm)")
            values[":maxm"] = _n(max_memories)
        if max_bytes and size > 0:
            conditions.append("(attribute_not_exists(#b) OR #b <= :maxb)")
            values[":maxb"] = _n(max_bytes - size)
        update: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"PK": _s(user_pk(user_id)), "SK": _s(PROFILE_SK)},
            "UpdateExpression": "ADD #m :m, #b :b, #dv :one SET #gen = if_not_exists(#gen, :gen)",
            "ExpressionAttributeNames": {
                "#m": "memories",
                "#b": "bytes",
                "#dv": "data_version",
                "#gen": "generation",
            },
            "ExpressionAttributeValues": values,
        }
        if conditions:
            update["ConditionExpression"] = " AND ".join(conditions)
        return update

    async def create_memory(
        self,
        record: MemoryRecord,
        *,
        job: JobRecord | None,
        default_limits: Limits,
        idempotency: IdempotencyClaim | None,
        response: dict[str, Any] | None = None,
    ) -> None:
        now = record.created_at
        pk = user_pk(record.user_id)
        profile = await self.get_profile(record.user_id)
        limits = default_limits.overridden(profile.limits_override)
        if limits.max_bytes and record.size_bytes > limits.max_bytes:
            raise LimitReached("memory_size", retry_after=3600)
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._memory_item(record),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {
                "Update": self._usage_update(
                    record.user_id,
                    memories=1,
                    size=record.size_bytes,
                    max_memories=limits.max_memories,
                    max_bytes=limits.max_bytes,
                )
            },
        ]
        day_update: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"PK": _s(pk), "SK": _s(day_sk(now))},
            "UpdateExpression": "ADD writes :one SET expires_at = :exp",
            "ExpressionAttributeValues": {
                ":one": _n(1),
                ":exp": _n(int((now + timedelta(days=2)).timestamp())),
            },
        }
        if limits.daily_writes:
            day_update["ConditionExpression"] = "attribute_not_exists(writes) OR writes < :maxw"
            day_update["ExpressionAttributeValues"][":maxw"] = _n(limits.daily_writes)
        items.append({"Update": day_update})
        if job is not None:
            items.append({"Put": {"TableName": self.table, "Item": self._job_item(job)}})
        items.append(self._change_put(record.user_id, record.id))
        if idempotency is not None:
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            "PK": _s(pk),
                            "SK": _s(f"IDEM#{idempotency.scope}#{idempotency.key}"),
                            "type": _s("idempotency"),
                            "body_hash": _s(idempotency.body_hash),
                            "response": _s(json.dumps(response or {})),
                            "expires_at": _n(int((now + IDEMPOTENCY_TTL).timestamp())),
                        },
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
            )
        try:
            await self._transact(items)
            self._remember_size(record)
        except self.client.exceptions.TransactionCanceledException as exc:
            failed = {
                position
                for position, reason in enumerate(exc.response.get("CancellationReasons", []))
                if reason.get("Code") == "ConditionalCheckFailed"
            }
            if idempotency is not None and len(items) - 1 in failed:
                existing = await self.get_idempotency(
                    record.user_id, idempotency.scope, idempotency.key
                )
                if existing is not None:
                    raise IdempotentReplay(existing) from None
            if 2 in failed:
                raise LimitReached("daily_writes", retry_after=seconds_to_midnight(now)) from None
            if 1 in failed:
                profile = await self.get_profile(record.user_id)
                over_count = limits.max_memories and profile.usage.memories >= limits.max_memories
                which: Limit = "max_memories" if over_count else "max_bytes"
                raise LimitReached(which, retry_after=3600) from None
            raise

    async def _transact(self, items: list[dict[str, Any]]) -> None:
        """A transaction, retried with jittered backoff while it only lost a race
        (`TransactionConflict`: parallel writes to the same usage counters). Eight attempts
        (about 5 s of backoff at most) let a burst of a dozen writes by one user all finish."""
        for attempt in range(TRANSACT_ATTEMPTS):
            try:
                await self._run(self.client.transact_write_items, TransactItems=items)
                return
            except self.client.exceptions.TransactionCanceledException as exc:
                codes = {r.get("Code") for r in exc.response.get("CancellationReasons", [])}
                if "TransactionConflict" not in codes or codes & {"ConditionalCheckFailed"}:
                    raise
                if attempt == TRANSACT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))

    async def get_idempotency(self, user_id: str, scope: str, key: str) -> IdempotencyRecord | None:
        item = await self._get(user_pk(user_id), f"IDEM#{scope}#{key}")
        if not item:
            return None
        return IdempotencyRecord(
            body_hash=item["body_hash"]["S"], response=json.loads(item["response"]["S"])
        )

    async def get_memory(self, user_id: str, memory_id: str) -> MemoryRecord | None:
        if not is_id(memory_id):
            return None
        item = await self._get(user_pk(user_id), memory_sk(memory_id))
        return self._remember_size(self._memory_of(item)) if item else None

    async def get_memory_and_job(
        self, user_id: str, memory_id: str, job_id: str
    ) -> tuple[MemoryRecord | None, JobRecord | None]:
        # both point reads go in one BatchGetItem (with the batch's other records', `_get`)
        memory, job = await asyncio.gather(
            self.get_memory(user_id, memory_id), self.get_job(user_id, job_id)
        )
        return memory, job

    async def list_memories(
        self, user_id: str, query: ListQuery
    ) -> tuple[list[MemoryRecord], str | None]:
        # Newest saved first (the sort key); `since`/`until` compare when a memory happened,
        # which is not in the key (an imported chat happened long before it was saved), so
        # they are checked on each record as the pages come.
        low, high = "MEM#", "MEM#~"
        if query.cursor:
            high = decode_cursor(query.cursor, "MEM#")
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND SK BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": _s(user_pk(user_id)),
                ":lo": _s(low),
                ":hi": _s(high),
            },
            "ScanIndexForward": False,
        }
        filters = []
        names: dict[str, str] = {}
        for attr, value in (("kind", query.kind), ("status", query.status)):
            if value:
                filters.append(f"#{attr} = :{attr}")
                names[f"#{attr}"] = attr
                request["ExpressionAttributeValues"][f":{attr}"] = _s(value)
        if query.provider:
            filters.append("provider = :provider")
            request["ExpressionAttributeValues"][":provider"] = _s(query.provider)
        if query.tag:
            filters.append("contains(tags, :tag)")
            request["ExpressionAttributeValues"][":tag"] = _s(query.tag)
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        if names:
            request["ExpressionAttributeNames"] = names
        # One extra item tells whether another page exists.
        selective = filters or query.since or query.until
        request["Limit"] = max(4 * query.limit, 100) if selective else query.limit + 1
        found = await self._run(
            self._list_until, request=request, query=query, skip=high if query.cursor else None
        )
        page = found[: query.limit]
        next_cursor = encode_cursor(memory_sk(page[-1].id)) if len(found) > query.limit else None
        return page, next_cursor

    def _list_until(
        self, request: dict[str, Any], query: ListQuery, skip: str | None
    ) -> list[MemoryRecord]:
        found: list[MemoryRecord] = []
        for page in self._pages(request):
            for item in page:
                if item["SK"]["S"] == skip:
                    continue  # the cursor item itself was on the previous page
                record = self._memory_of(item)
                if query.since and record.occurred_at < query.since:
                    continue
                if query.until and record.occurred_at > query.until:
                    continue
                found.append(record)
            if len(found) > query.limit:
                break
        return found

    async def all_memories(self, user_id: str) -> list[MemoryRecord]:
        def read() -> list[MemoryRecord]:
            items = self._query_all(user_id, "MEM#", attributes=("data",))
            # decoded here, in the worker thread, not on the event loop
            return _RECORDS.validate_json(f"[{','.join(item['data']['S'] for item in items)}]")

        return await self._run(read)

    async def save_memory(
        self,
        record: MemoryRecord,
        *,
        expected_version: int,
        max_bytes: int = 0,
        job: JobRecord | None = None,
        vector: StoredVector | None = None,
    ) -> MemoryRecord:
        """Writes `record` (and `job`, and `vector`) if the stored version is still
        `expected_version`, in one transaction; the stored copy gets version + 1. Storage
        accounting follows any change in size."""
        check_own_job(record, job)
        check_own_vector(record, vector)
        previous_size = self._known_sizes.get((record.user_id, record.id, expected_version))
        if previous_size is None:
            previous = await self.get_memory(record.user_id, record.id)
            if previous is None or previous.version != expected_version:
                raise VersionConflict(record.id)
            previous_size = previous.size_bytes
        saved = record.model_copy(update={"version": expected_version + 1})
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._memory_item(saved),
                    "ConditionExpression": "version = :v",
                    "ExpressionAttributeValues": {":v": _n(expected_version)},
                }
            },
            {
                "Update": self._usage_update(
                    record.user_id,
                    memories=0,
                    size=saved.size_bytes - previous_size,
                    max_bytes=max_bytes,
                )
            },
            self._change_put(record.user_id, record.id),
        ]
        # unconditional: the memory's version condition guards them
        if job is not None:
            items.append({"Put": {"TableName": self.table, "Item": self._job_item(job)}})
        if vector is not None:
            items.append(
                {"Put": {"TableName": self.table, "Item": _vector_item(record.user_id, vector)}}
            )
        try:
            await self._transact(items)
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise VersionConflict(record.id) from None
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise LimitReached("max_bytes", retry_after=3600) from None
            raise  # still losing races after the retries: transient
        return self._remember_size(saved)

    async def delete_memory(self, user_id: str, memory_id: str) -> MemoryRecord | None:
        """Deletes the memory with its vector and job in one transaction, then the user's
        search index snapshot."""
        record = await self.get_memory(user_id, memory_id)
        if record is None:
            return None
        pk = _s(user_pk(user_id))
        items: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": {"PK": pk, "SK": _s(memory_sk(memory_id))},
                    "ConditionExpression": "version = :v",
                    "ExpressionAttributeValues": {":v": _n(record.version)},
                }
            },
            {"Delete": {"TableName": self.table, "Key": {"PK": pk, "SK": _s(f"VEC#{memory_id}")}}},
            {"Update": self._usage_update(user_id, memories=-1, size=-record.size_bytes)},
            self._change_put(user_id, memory_id),
        ]
        if record.job_id:
            items.append(
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": {"PK": pk, "SK": _s(f"JOB#{record.job_id}")},
                    }
                }
            )
        try:
            await self._transact(items)
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                raise VersionConflict(memory_id) from None
            raise  # still losing races after the retries: transient
        # The search index's snapshot would still hold the memory's text (a search never
        # returns it: the change log removes it on load); the next full load writes a new one.
        await index_snapshot.discard(user_id)
        return record

    # ------------------------------------------------------------------ usage
    async def get_profile(self, user_id: str) -> Profile:
        now = datetime.now(UTC)
        # _batch_get retries unprocessed keys: a throttled read must not look like an empty
        # profile (zero usage, data version 0)
        items = await self._run(
            self._batch_get, pk=user_pk(user_id), sort_keys=[PROFILE_SK, day_sk(now)]
        )
        by_sk = {item["SK"]["S"]: item for item in items}
        profile = by_sk.get(PROFILE_SK, {})
        day = by_sk.get(day_sk(now), {})
        return Profile(
            user_id=user_id,
            limits_override=json.loads(profile.get("limits", {}).get("S", "{}")),
            usage=UsageCounts(
                memories=int(profile.get("memories", {}).get("N", 0)),
                bytes=int(profile.get("bytes", {}).get("N", 0)),
                writes_today=int(day.get("writes", {}).get("N", 0)),
            ),
        )

    async def index_version(self, user_id: str) -> IndexVersion:
        """The generation, data_version and memory count of the user's memories, for the warm
        search index: data_version is bumped by every memory write; the generation is set when
        the profile is first written, so after an erase (which deletes it) a cached index of the
        erased data cannot pass for current even where data_version lands on the same number."""
        item = await self._get(user_pk(user_id), PROFILE_SK) or {}
        return IndexVersion(
            item.get("generation", {}).get("S", ""),
            int(item.get("data_version", {}).get("N", 0)),
            int(item.get("memories", {}).get("N", 0)),
        )

    async def set_limits(self, user_id: str, limits: dict[str, int]) -> Profile:
        await self._run(
            self.client.update_item,
            TableName=self.table,
            Key={"PK": _s(user_pk(user_id)), "SK": _s(PROFILE_SK)},
            UpdateExpression="SET limits = :l",
            ExpressionAttributeValues={":l": _s(json.dumps(limits))},
        )
        return await self.get_profile(user_id)

    async def take_rate(
        self, key: str, *, limit: int, period: float, owner: str | None, now: float
    ) -> float:
        """One request against `key`'s rate: `limit` requests per `period` seconds, as GCRA
        (a token bucket of `limit` refilled evenly: no window boundary lets a burst through).
        Returns 0 when it may pass, else the seconds until one could.

        The state is one number, the theoretical arrival time `tat`, updated by one
        conditional write: `tat + interval` while the bucket is in use (tat ahead of now),
        `now + interval` once it has drained. Which of the two applies is guessed from the
        last answer this container saw; a wrong guess costs a second write. A user's state
        lives in their partition, so erasing the user erases it."""
        interval = period / limit
        edge = now + period - interval  # the latest tat that still has room for one more
        pk = user_pk(owner) if owner else f"RATE#{key}"
        common: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"PK": _s(pk), "SK": _s(f"RATE#{key}")},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "ReturnValues": "UPDATED_NEW",
        }
        expires = _n(int(edge + interval + period))
        in_use = {
            **common,
            "UpdateExpression": "SET tat = tat + :i, expires_at = :exp",
            "ConditionExpression": "tat >= :now AND tat <= :edge",
            "ExpressionAttributeValues": {
                ":i": _n(interval),
                ":now": _n(now),
                ":edge": _n(edge),
                ":exp": expires,
            },
        }
        drained = {
            **common,
            "UpdateExpression": "SET tat = :next, expires_at = :exp",
            "ConditionExpression": "attribute_not_exists(tat) OR tat < :now",
            "ExpressionAttributeValues": {
                ":next": _n(now + interval),
                ":now": _n(now),
                ":exp": expires,
            },
        }
        attempts = [in_use, drained] if _RATE_HINTS.get(pk + key, 0.0) >= now else [drained, in_use]
        for update in attempts:
            try:
                done = await self._run(self.client.update_item, **update)
            except self.client.exceptions.ConditionalCheckFailedException as exc:
                tat = float(exc.response.get("Item", {}).get("tat", {}).get("N", now))
                _remember_rate(pk + key, tat)
                if tat > edge:
                    return tat - edge
                continue
            _remember_rate(pk + key, float(done["Attributes"]["tat"]["N"]))
            return 0.0
        return interval  # both writes lost a race with parallel requests: try again shortly

    # ------------------------------------------------------------------ jobs
    def _job_item(self, job: JobRecord) -> dict[str, Any]:
        ttl_days = get_settings().job_ttl_days
        return {
            "PK": _s(user_pk(job.user_id)),
            "SK": _s(f"JOB#{job.id}"),
            "type": _s("job"),
            "data": _s(job.model_dump_json()),
            "expires_at": _n(int(job.created_at.timestamp()) + ttl_days * 86400),
        }

    async def put_job(self, job: JobRecord) -> None:
        """Creates or replaces a job (jobs are written by one worker at a time)."""
        await self._run(self.client.put_item, TableName=self.table, Item=self._job_item(job))

    async def save_job(self, job: JobRecord) -> bool:
        """Updates a job that still exists; False when it is gone (its memory was deleted or
        its user erased), so a late worker cannot bring it back."""
        try:
            await self._run(
                self.client.put_item,
                TableName=self.table,
                Item=self._job_item(job),
                ConditionExpression="attribute_exists(PK)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    async def get_job(self, user_id: str, job_id: str) -> JobRecord | None:
        if not is_id(job_id):
            return None
        item = await self._get(user_pk(user_id), f"JOB#{job_id}")
        return JobRecord.model_validate_json(item["data"]["S"]) if item else None

    # ------------------------------------------------------------------ vectors
    async def put_vectors(self, user_id: str, vectors: list[StoredVector]) -> None:
        # BatchWriteItem refuses a request that names one key twice, failing every item in it:
        # one vector per memory (the last given wins).
        vectors = list({v.memory_id: v for v in vectors}.values())

        def write() -> None:
            self._batch_write([{"PutRequest": {"Item": _vector_item(user_id, v)}} for v in vectors])

        await self._run(write)

    async def stuck_memories(self, updated_before: datetime) -> list[MemoryRecord]:
        """Memories still pending/processing since before `updated_before` (an enqueue that
        failed, or a message that died without a DLQ): the cleanup sweep re-enqueues them."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "#type = :memory AND #status IN (:pending, :processing)",
            "ExpressionAttributeNames": {"#type": "type", "#status": "status"},
            "ExpressionAttributeValues": {
                ":memory": _s("memory"),
                ":pending": _s("pending"),
                ":processing": _s("processing"),
            },
        }

        def scan() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            while True:
                resp = self.client.scan(**request)
                items += resp.get("Items", [])
                if "LastEvaluatedKey" not in resp:
                    return items
                request["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

        records = [self._memory_of(item) for item in await self._run(scan)]
        return [r for r in records if r.updated_at < updated_before]

    async def get_vectors(self, user_id: str) -> dict[str, StoredVector]:
        def read() -> dict[str, StoredVector]:
            # not projected: a vector item has little else, and moto's projection (a deep
            # copy of each item) doubled the local cold load's VEC# cost
            items = self._query_all(user_id, "VEC#")
            return {v.memory_id: v for v in map(self._vector_of, items)}

        return await self._run(read)

    @staticmethod
    def _vector_of(item: dict[str, Any]) -> StoredVector:
        return StoredVector(
            memory_id=item["SK"]["S"][4:],
            space=item["space"]["S"],
            content_hash=item["content_hash"]["S"],
            vector=item["v"]["B"],
        )
