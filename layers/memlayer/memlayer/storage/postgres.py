"""The Postgres backend (STORAGE_BACKEND=supabase) of `Store` and of the search port. Schema:
infra/supabase/migrations (docs/data-model.md).

Connections suit Lambda behind Supabase's transaction pooler (Supavisor, port 6543): asyncpg
with no server-side prepared-statement cache, a pool of at most two connections per event
loop (one warm container runs one loop), short timeouts, and one retry when a connection
dropped under a transaction. A drop can lose the reply to a COMMIT that went through, so every
write is safe to run twice: creates insert `on conflict do nothing` and take "this very record
is already there" as done (`_inserted`, and `memlayer.create_memory`), the rest are upserts or
conditional updates. A memory's create and a pipeline stage's save are one call of a SQL
function each, sent with the transaction's `begin` and `commit` in one message (`_call`):
one round trip, and the user's counter rows locked only while the server finishes it.

Every operation on one user's data runs in a transaction as that user: `role authenticated`
with the user's JWT claims, so row-level security, not only the `where user_id =` written here
too, keeps users apart. What spans users (the cleanup sweep, admin counts, resolving an API key
or a WebSocket connection to its user, address rate limits) runs as `service_role`.

Quotas, idempotency keys, versions and capture pairing are exact under concurrency: counters
move in conditional `update ... where <limit holds>` statements (row locks serialize them),
idempotency keys are claimed with `insert ... on conflict do nothing`, and version checks are
part of the `where` of the write."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import numpy as np

from memlayer import secrets
from memlayer.ai.embeddings import get_embedder
from memlayer.ids import is_id
from memlayer.models import JobRecord, Limits, ListQuery, MemoryRecord, UsageCounts
from memlayer.search import fusion
from memlayer.search.fusion import Hit, SearchFilters, SearchMode
from memlayer.settings import get_settings
from memlayer.storage.accounts import (
    ITEM_KINDS,
    REVOKED_KEY_RETENTION_SECONDS,
    TOUCH_INTERVAL_SECONDS,
    ApiKeyRecord,
)
from memlayer.storage.base import (
    IdempotencyClaim,
    Profile,
    StoredVector,
    check_own_job,
    check_own_vector,
)
from memlayer.storage.captures import PendingCapture
from memlayer.storage.cleanup import ExpiredFound
from memlayer.storage.connections import Connection
from memlayer.storage.errors import (
    IdempotencyRecord,
    IdempotentReplay,
    InvalidCursor,
    LimitReached,
    StorageUnavailable,
    VersionConflict,
    seconds_to_midnight,
)
from memlayer.storage.search_fields import request_reembed, search_fields
from memlayer.storage.turn_reads import TurnReads
from memlayer.storage.uploads import OPEN_STATUSES, UploadRecord
from memlayer.text import highlight_terms, query_terms

T = TypeVar("T")
IDEMPOTENCY_TTL = timedelta(hours=24)
POOL_SIZE = 2
# The HNSW index answers for a user with at least EXACT_SCAN_BELOW memories who holds at least
# HNSW_MIN_SHARE of the table; anyone else gets an exact scan of their own vectors. The index
# is shared by all users: a filtered (iterative) scan wades through other users' vectors, so
# its cost grows as the user's share shrinks, while an exact scan's grows with the user's
# count (bench/postgres.py and the README measure both).
EXACT_SCAN_BELOW = 5_000
HNSW_MIN_SHARE = 0.25
HNSW_EF_SEARCH = 100  # the least first pass of an HNSW scan (memlayer.search_legs); README
KEYWORD_CANDIDATES = 1_000  # memories the keyword leg ranks per tier, at most
HIGHLIGHT_LENGTH = 200  # characters of a hit's text around each highlighted term

_MEMORY_COLUMNS = (
    "user_id, id, kind, status, version, provider, tags, search_tags, title, content,"
    " content_hash, created_at, updated_at, size_bytes, job_id, dedupe_key, record"
)
_COLUMN_NAMES = [name.strip() for name in _MEMORY_COLUMNS.split(",")]
# Memories and their jobs by (memory id, job id), their records as text (either null if absent).
_PAIRS_SQL = (
    "select k.memory_id, k.job_id, m.record::text, j.record::text"
    " from unnest($2::text[], $3::text[]) as k(memory_id, job_id)"
    " left join memlayer.memories m on m.user_id = $1 and m.id = k.memory_id"
    " left join memlayer.jobs j on j.user_id = $1 and j.id = k.job_id"
)
_Pair = tuple[str | None, str | None]
_PairKey = tuple[str, str, str]  # (user id, memory id, job id)


# A connection that dropped or could not be made: tried once more on a fresh one.
_DROPPED = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)
# SQLSTATEs that mean "try again shortly", not a bug: connection exceptions (08), transaction
# rollbacks (40: serialization failure, deadlock), insufficient resources (53: too many
# connections), operator intervention (57: statement timeout, shutdown, restart), a lock
# not available (55P03).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57"})


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):  # asyncpg's command_timeout
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in _TRANSIENT_CLASSES or state == "55P03"


def _literal(text: str) -> str:
    """`text` as an SQL string constant: an E'' string escapes its backslashes and quotes the
    same way whatever `standard_conforming_strings` says (text never holds NUL)."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: none. Everything memlayer sets is transaction-local
    (`set_config(…, true)`), it holds no session locks, cursors or LISTENs, and asyncpg rolls
    back an open transaction itself; the default `RESET ALL …` was a round trip per
    operation (and through the transaction pooler it reaches some other server session)."""


def _normalize_tag(tag: str) -> str:
    return " ".join(tag.strip().lower().split())


def _memory_values(record: MemoryRecord) -> tuple[Any, ...]:
    fields = search_fields(record)
    return (
        record.user_id,
        record.id,
        record.kind,
        record.status,
        record.version,
        record.source.provider,
        list(record.tags),
        sorted({_normalize_tag(t) for t in fields.tags}),
        fields.title,
        record.content,
        record.content_hash,
        record.created_at,
        record.updated_at,
        record.size_bytes,
        record.job_id,
        fields.dedupe_key,
        record.model_dump_json(),
    )


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_object(values: Mapping[str, Any], **raw: str | None) -> str:
    """`values` as a JSON object, with the `raw` members (JSON texts already: a record's
    `model_dump_json()`) spliced in as they are; a None member is left out."""
    members = [json.dumps(values, default=_json_default)[1:-1]] if values else []
    members += [f'"{name}": {text}' for name, text in raw.items() if text is not None]
    return "{" + ", ".join(members) + "}"


def _memory_json(record: MemoryRecord) -> str:
    """The row's columns (`_memory_values`) as the JSON object `memlayer.create_memory` and
    `memlayer.save_memory` read (migration 20261202143000)."""
    *values, record_json = _memory_values(record)
    return _json_object(dict(zip(_COLUMN_NAMES, values, strict=False)), record=record_json)


def _job_json(job: JobRecord | None) -> str | None:
    if job is None:
        return None
    expires_at = job.created_at + timedelta(days=get_settings().job_ttl_days)
    values = {"user_id": job.user_id, "id": job.id, "expires_at": expires_at}
    return _json_object(values, record=job.model_dump_json())


def _refusal(exc: asyncpg.PostgresError, now: datetime) -> Exception | None:
    """The storage error a memlayer call raised as its own SQLSTATE (migrations
    20261202143000, 20261204000000), or None for any other error."""
    if exc.sqlstate == "MLVC0":
        return VersionConflict(exc.detail)
    if exc.sqlstate == "MLLR0":
        which = exc.detail
        if which == "daily_writes":
            return LimitReached(which, retry_after=seconds_to_midnight(now))
        return LimitReached(
            which if which in ("max_memories", "memory_size") else "max_bytes", retry_after=3600
        )
    if exc.sqlstate == "MLIR0":
        first = json.loads(exc.detail)
        return IdempotentReplay(IdempotencyRecord(first["body_hash"], first["response"]))
    return None


def _memory(text: str) -> MemoryRecord:
    return MemoryRecord.model_validate_json(text)


def _halfvec(vector: bytes) -> str:
    """pgvector's text form of a stored float16 vector. Five significant digits give back
    every float16 exactly (read as float4 and rounded to half, as pgvector reads them), in
    one formatting call: 2.5x faster than each number's repr, and shorter."""
    values = np.frombuffer(vector, "<f2").astype(float).tolist()
    return "[" + ",".join(["%.5g"] * len(values)) % tuple(values) + "]"


def _encode_cursor(memory_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": memory_id}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        memory_id = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidCursor(cursor) from None
    if not isinstance(memory_id, str) or not is_id(memory_id):
        raise InvalidCursor(cursor)
    return memory_id


async def _inserted(
    conn: Any,
    insert: str,
    values: tuple[Any, ...],
    table: str,
    record: MemoryRecord | UploadRecord | ApiKeyRecord,
) -> bool:
    """Runs `insert` (`... on conflict (user_id, id) do nothing returning 1`): True when it
    inserted the row, False when the row holding the id is this very record (an earlier attempt
    of the same create committed and its reply was lost with the connection: done). Another
    record under the id is a `VersionConflict`."""
    if await conn.fetchval(insert, *values) is not None:
        return True
    same = await conn.fetchval(
        f"select record = $3::jsonb from memlayer.{table}"  # noqa: S608 (a fixed table name)
        " where user_id = $1 and id = $2",
        record.user_id,
        record.id,
        record.model_dump_json(),
    )
    if not same:
        raise VersionConflict(record.id)
    return False


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _at(epoch: int | float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _session(user_id: str | None, settings: Mapping[str, str] | None) -> str:
    """The statement that makes the transaction `user_id`'s (role authenticated with the
    user's claims) or service_role's (None), with `settings` (GUCs) for the transaction."""
    if user_id is None:
        local = {"role": "service_role"}
    else:
        claims = json.dumps({"sub": user_id, "role": "authenticated"})
        local = {"request.jwt.claims": claims, "role": "authenticated"}
    local.update(settings or {})
    return "select " + ", ".join(
        f"set_config({_literal(name)}, {_literal(value)}, true)" for name, value in local.items()
    )


class PostgresStore:
    backend = "supabase"

    def __init__(self, dsn: str, *, timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncpg.Pool] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        # `get_memory_and_job`'s reads of one loop turn: one statement per user
        self._pair_reads: TurnReads[_PairKey, _Pair] = TurnReads(
            self._pairs, self._pair, group=lambda key: key[0]
        )

    @classmethod
    def from_settings(cls) -> PostgresStore:
        settings = get_settings()
        dsn = secrets.value("database_url", settings)
        assert dsn is not None  # settings require it (or its ARN) for this backend
        return cls(dsn.get_secret_value(), timeout=settings.database_timeout_seconds)

    # ------------------------------------------------------------------ connections
    async def _pool(self) -> asyncpg.Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None:
            return pool
        lock = self._locks.setdefault(loop, asyncio.Lock())
        async with lock:
            pool = self._pools.get(loop)
            if pool is None:
                pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=0,
                    max_size=POOL_SIZE,
                    statement_cache_size=0,  # the transaction pooler cannot keep them
                    timeout=self.timeout,
                    command_timeout=self.timeout,
                    max_inactive_connection_lifetime=300,
                    reset=_keep_session,
                )
                self._pools[loop] = pool
        return pool

    async def _run(
        self,
        user_id: str | None,
        op: Callable[[Any], Awaitable[T]],
        *,
        settings: Mapping[str, str] | None = None,
    ) -> T:
        """Runs `op(connection)` in one transaction as `user_id` (role authenticated with the
        user's claims), or as service_role when `user_id` is None, with `settings` (GUCs) set
        for the transaction; once more on a connection that dropped under it.

        One simple-protocol query opens the transaction and sets all of it: one round trip
        where a transaction block and a parametrized statement took three (asyncpg without a
        statement cache prepares each statement in a round trip of its own)."""
        begin = "begin; " + _session(user_id, settings)
        return await self._attempt(lambda conn: self._transaction(conn, begin, op))

    async def _call(self, user_id: str | None, function: str, argument: str, now: datetime) -> None:
        """`memlayer.<function>(argument::jsonb)` in one transaction as `user_id` (as `_run`),
        sent with its `begin` and `commit` as one simple-protocol message: one round trip, and
        whatever rows the call locks stay locked only while the server finishes it. The call
        answers with an error or not at all; its refusals (`_refusal`) are raised as the
        storage errors they stand for. `argument` goes as a string constant (`_literal`)."""
        sql = (
            f"begin; {_session(user_id, None)};"
            f" select memlayer.{function}({_literal(argument)}::jsonb); commit"
        )

        async def op(conn: Any) -> None:
            try:
                await conn.execute(sql)
            except asyncpg.PostgresError as exc:
                if not conn.is_closed() and conn.is_in_transaction():
                    await conn.execute("rollback")  # the message stopped at the error
                refusal = _refusal(exc, now)
                if refusal is None:
                    raise
                raise refusal from None

        await self._attempt(op)

    async def _attempt(self, op: Callable[[Any], Awaitable[T]]) -> T:
        """`op(connection)` on a pooled connection; once more on a connection that dropped
        under it. A database still unreachable, or briefly unable to answer (`_transient`),
        raises StorageUnavailable."""
        for attempt in range(2):
            pool = await self._pool()  # (connects lazily: min_size 0)
            try:
                async with pool.acquire() as conn:
                    return await op(conn)
            except _DROPPED as exc:
                if attempt == 1:
                    raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
                await pool.expire_connections()
            except (asyncpg.PostgresError, TimeoutError) as exc:
                if _transient(exc):
                    raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
                raise
        raise AssertionError("unreachable")

    @staticmethod
    async def _transaction(conn: Any, begin: str, op: Callable[[Any], Awaitable[T]]) -> T:
        try:
            await conn.execute(begin)
            result = await op(conn)
        except BaseException:
            # (a dropped connection rolled back already)
            if not conn.is_closed() and conn.is_in_transaction():
                await conn.execute("rollback")
            raise
        await conn.execute("commit")
        return result

    async def ping(self) -> bool:
        try:
            return await self._run(None, lambda conn: conn.fetchval("select true")) is True
        except Exception:
            return False

    async def close(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    # ------------------------------------------------------------------ memories
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
        claim = None
        if idempotency is not None:
            claim = {
                "scope": idempotency.scope,
                "key": idempotency.key,
                "body_hash": idempotency.body_hash,
                "response": response or {},
                "expires_at": now + IDEMPOTENCY_TTL,
            }
        values = {
            "idempotency": claim,
            "day": now.date(),
            "day_expires_at": now + timedelta(days=2),
            # the user's own limits replace these in the call (migration 20261204000000)
            "limits": {
                "daily_writes": default_limits.daily_writes,
                "max_memories": default_limits.max_memories,
                "max_bytes": default_limits.max_bytes,
            },
        }
        argument = _json_object(values, memory=_memory_json(record), job=_job_json(job))
        await self._call(record.user_id, "create_memory", argument, now)

    async def get_idempotency(self, user_id: str, scope: str, key: str) -> IdempotencyRecord | None:
        row = await self._run(
            user_id,
            lambda conn: conn.fetchrow(
                "select body_hash, response::text from memlayer.idempotency_keys"
                " where user_id = $1 and scope = $2 and key = $3",
                user_id,
                scope,
                key,
            ),
        )
        return IdempotencyRecord(row["body_hash"], json.loads(row["response"])) if row else None

    async def get_memory(self, user_id: str, memory_id: str) -> MemoryRecord | None:
        if not is_id(memory_id):
            return None
        text = await self._run(
            user_id,
            lambda conn: conn.fetchval(
                "select record::text from memlayer.memories where user_id = $1 and id = $2",
                user_id,
                memory_id,
            ),
        )
        return _memory(text) if text else None

    async def get_memory_and_job(
        self, user_id: str, memory_id: str, job_id: str
    ) -> tuple[MemoryRecord | None, JobRecord | None]:
        """Reads asked for in the same turn of the event loop (the records of a worker's
        batch, each reading its memory and job first) are made together (`TurnReads`): one
        statement per user (`_PAIRS_SQL`) in that user's transaction."""
        memory, job = await self._pair_reads.read((user_id, memory_id, job_id))
        return (
            _memory(memory) if memory else None,
            JobRecord.model_validate_json(job) if job else None,
        )

    async def _pairs(self, keys: list[_PairKey]) -> dict[_PairKey, _Pair]:
        user_id = keys[0][0]  # (one user's keys: TurnReads groups them)
        rows = await self._run(
            user_id,
            lambda conn: conn.fetch(
                _PAIRS_SQL, user_id, [k[1] for k in keys], [k[2] for k in keys]
            ),
        )
        found = {(row[0], row[1]): (row[2], row[3]) for row in rows}
        return {key: found[key[1:]] for key in keys}

    async def _pair(self, key: _PairKey) -> _Pair:
        return (await self._pairs([key]))[key]

    async def list_memories(
        self, user_id: str, query: ListQuery
    ) -> tuple[list[MemoryRecord], str | None]:
        conditions = ["user_id = $1"]
        args: list[Any] = [user_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if query.since:  # when it happened, not when it was saved (the order)
            conditions.append(f"occurred_at >= {arg(query.since)}")
        if query.until:
            conditions.append(f"occurred_at <= {arg(query.until)}")
        if query.cursor:
            conditions.append(f"id < {arg(_decode_cursor(query.cursor))}")
        for column, value in (
            ("kind", query.kind),
            ("status", query.status),
            ("provider", query.provider),
        ):
            if value:
                conditions.append(f"{column} = {arg(value)}")
        if query.tag:
            conditions.append(f"{arg(query.tag)} = any(tags)")
        sql = (
            "select record::text from memlayer.memories where "  # noqa: S608 (no values inlined)
            + " and ".join(conditions)
            + f" order by id desc limit {arg(query.limit + 1)}"
        )
        rows = await self._run(user_id, lambda conn: conn.fetch(sql, *args))
        found = [_memory(row[0]) for row in rows]
        page = found[: query.limit]
        next_cursor = _encode_cursor(page[-1].id) if len(found) > query.limit else None
        return page, next_cursor

    async def all_memories(self, user_id: str) -> list[MemoryRecord]:
        rows = await self._run(
            user_id,
            lambda conn: conn.fetch(
                "select record::text from memlayer.memories where user_id = $1 order by id",
                user_id,
            ),
        )
        return [_memory(row[0]) for row in rows]

    async def save_memory(
        self,
        record: MemoryRecord,
        *,
        expected_version: int,
        max_bytes: int = 0,
        job: JobRecord | None = None,
        vector: StoredVector | None = None,
    ) -> MemoryRecord:
        check_own_job(record, job)
        check_own_vector(record, vector)
        saved = record.model_copy(update={"version": expected_version + 1})
        values: dict[str, Any] = {"expected_version": expected_version, "max_bytes": max_bytes}
        if vector is not None:  # (migration 20261204001000)
            values["vector"] = {
                "embedding": _halfvec(vector.vector),
                "dims": len(vector.vector) // 2,
                "space": vector.space,
                "hash": vector.content_hash,
            }
        argument = _json_object(values, memory=_memory_json(saved), job=_job_json(job))
        await self._call(record.user_id, "save_memory", argument, saved.updated_at)
        return saved

    async def delete_memory(self, user_id: str, memory_id: str) -> MemoryRecord | None:
        """Deletes the memory (its vector is a column of it) and its job."""
        if not is_id(memory_id):
            return None

        async def op(conn: Any) -> str | None:
            row = await conn.fetchrow(
                "delete from memlayer.memories where user_id = $1 and id = $2"
                " returning record::text, size_bytes, job_id",
                user_id,
                memory_id,
            )
            if row is None:
                return None
            await conn.execute(
                "update memlayer.profiles set memories = memories - 1, bytes = bytes - $2"
                " where user_id = $1",
                user_id,
                row["size_bytes"],
            )
            if row["job_id"]:
                await conn.execute(
                    "delete from memlayer.jobs where user_id = $1 and id = $2",
                    user_id,
                    row["job_id"],
                )
            text: str = row["record"]
            return text

        text = await self._run(user_id, op)
        return _memory(text) if text else None

    async def stuck_memories(self, updated_before: datetime) -> list[MemoryRecord]:
        rows = await self._run(
            None,
            lambda conn: conn.fetch(
                "select record::text from memlayer.memories"
                " where status in ('pending', 'processing') and updated_at < $1",
                updated_before,
            ),
        )
        return [_memory(row[0]) for row in rows]

    # ------------------------------------------------------------------ usage
    async def get_profile(self, user_id: str) -> Profile:
        today = datetime.now(UTC).date()
        row = await self._run(
            user_id,
            lambda conn: conn.fetchrow(
                "select p.limits::text as limits, p.memories, p.bytes,"
                " (select writes from memlayer.day_counters"
                "  where user_id = $1 and day = $2) as writes"
                " from (select 1) one left join memlayer.profiles p on p.user_id = $1",
                user_id,
                today,
            ),
        )
        return Profile(
            user_id=user_id,
            limits_override=json.loads(row["limits"] or "{}"),
            usage=UsageCounts(
                memories=row["memories"] or 0,
                bytes=row["bytes"] or 0,
                writes_today=row["writes"] or 0,
            ),
        )

    async def set_limits(self, user_id: str, limits: dict[str, int]) -> Profile:
        await self._run(
            user_id,
            lambda conn: conn.execute(
                "insert into memlayer.profiles (user_id, limits) values ($1, $2::jsonb)"
                " on conflict (user_id) do update set limits = excluded.limits",
                user_id,
                json.dumps(limits),
            ),
        )
        return await self.get_profile(user_id)

    async def take_rate(
        self, key: str, *, limit: int, period: float, owner: str | None, now: float
    ) -> float:
        """One request against `key`'s rate, as GCRA (see the DynamoDB backend): one upsert
        moves the theoretical arrival time `tat` on by one interval while it stays within
        the period; 0 when the request may pass, else the seconds until one could."""
        interval = period / limit
        edge = now + period - interval

        async def op(conn: Any) -> float:
            passed = await conn.fetchval(
                "insert into memlayer.rate_limits as r (key, user_id, tat, expires_at)"
                " values ($1, $2, $3::float8 + $4::float8, $5) on conflict (key) do update"
                " set tat = greatest(r.tat, $3::float8) + $4::float8,"
                " expires_at = excluded.expires_at"
                " where greatest(r.tat, $3::float8) <= $6::float8 returning 1",
                key,
                owner,
                now,
                interval,
                _at(edge + interval + period),
                edge,
            )
            if passed is not None:
                return 0.0
            # The refused upsert locked the row: its tat is current.
            tat = await conn.fetchval("select tat from memlayer.rate_limits where key = $1", key)
            return float(tat) - edge if tat is not None else interval

        return await self._run(owner, op)

    # ------------------------------------------------------------------ jobs
    async def put_job(self, job: JobRecord) -> None:
        await self._run(
            job.user_id,
            lambda conn: conn.execute("select memlayer.put_job($1::jsonb)", _job_json(job)),
        )

    async def save_job(self, job: JobRecord) -> bool:
        """Updates a job that still exists; False when it is gone (its memory was deleted or
        its user erased), so a late worker cannot bring it back."""
        updated = await self._run(
            job.user_id,
            lambda conn: conn.fetchval(
                "update memlayer.jobs set record = $3::jsonb"
                " where user_id = $1 and id = $2 returning 1",
                job.user_id,
                job.id,
                job.model_dump_json(),
            ),
        )
        return updated is not None

    async def get_job(self, user_id: str, job_id: str) -> JobRecord | None:
        if not is_id(job_id):
            return None
        text = await self._run(
            user_id,
            lambda conn: conn.fetchval(
                "select record::text from memlayer.jobs where user_id = $1 and id = $2",
                user_id,
                job_id,
            ),
        )
        return JobRecord.model_validate_json(text) if text else None

    # ------------------------------------------------------------------ vectors
    async def put_vectors(self, user_id: str, vectors: list[StoredVector]) -> None:
        latest = {v.memory_id: v for v in vectors}  # one write per memory, the last wins
        if not latest:
            return
        columns = (
            list(latest),
            [_halfvec(v.vector) for v in latest.values()],
            [len(v.vector) // 2 for v in latest.values()],
            [v.space for v in latest.values()],
            [v.content_hash for v in latest.values()],
        )
        await self._run(
            user_id,
            lambda conn: conn.execute(
                "update memlayer.memories m set embedding = v.embedding::halfvec,"
                " embedding_dims = v.dims, embedding_space = v.space, embedding_hash = v.hash"
                " from unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::text[])"
                " as v(id, embedding, dims, space, hash)"
                # computed from content the memory no longer has: searched never, kept never
                " where m.user_id = $1 and m.id = v.id and m.content_hash = v.hash",
                user_id,
                *columns,
            ),
        )

    # ------------------------------------------------------------------ connections
    async def put_connection(
        self, user_id: str, connection_id: str, expires_at: int, *, key_id: str | None = None
    ) -> None:
        await self._run(
            user_id,
            lambda conn: conn.execute(
                "insert into memlayer.connections (connection_id, user_id, expires_at, key_id)"
                " values ($1, $2, $3, $4) on conflict (connection_id)"
                " do update set expires_at = excluded.expires_at, key_id = excluded.key_id"
                " where connections.user_id = excluded.user_id",
                connection_id,
                user_id,
                _at(expires_at),
                key_id,
            ),
        )

    async def delete_connection(self, connection_id: str) -> str | None:
        owner: str | None = await self._run(
            None,
            lambda conn: conn.fetchval(
                "delete from memlayer.connections where connection_id = $1 returning user_id",
                connection_id,
            ),
        )
        return owner

    async def list_connections(self, user_id: str) -> list[Connection]:
        rows = await self._run(
            user_id,
            lambda conn: conn.fetch(
                "select connection_id, expires_at, key_id from memlayer.connections"
                " where user_id = $1",
                user_id,
            ),
        )
        return [Connection(row[0], _epoch(row[1]), row[2]) for row in rows]

    # ------------------------------------------------------------------ captures
    async def put_capture(self, capture: PendingCapture) -> PendingCapture | None:
        """Stores the pending prompt of a conversation; returns the one it replaced, if any."""
        key = (capture.user_id, capture.provider, capture.conversation_id)
        values = (capture.capture_id, json.dumps(capture.__dict__), _at(capture.expires_at))

        async def op(conn: Any) -> str | None:
            inserted = await conn.fetchval(
                "insert into memlayer.captures (user_id, provider, conversation_id, capture_id,"
                " record, expires_at) values ($1, $2, $3, $4, $5::jsonb, $6)"
                " on conflict do nothing returning 1",
                *key,
                *values,
            )
            if inserted is not None:
                return None
            old: str = await conn.fetchval(
                "select record::text from memlayer.captures"
                " where user_id = $1 and provider = $2 and conversation_id = $3 for update",
                *key,
            )
            await conn.execute(
                "update memlayer.captures set capture_id = $4, record = $5::jsonb,"
                " expires_at = $6, claimed_until = null, cleanup_claim = null,"
                " cleanup_claimed_at = null"
                " where user_id = $1 and provider = $2 and conversation_id = $3",
                *key,
                *values,
            )
            return old

        old = await self._run(capture.user_id, op)
        return PendingCapture(**json.loads(old)) if old else None

    async def get_capture(
        self, user_id: str, provider: str, conversation_id: str
    ) -> PendingCapture | None:
        text = await self._run(
            user_id,
            lambda conn: conn.fetchval(
                "select record::text from memlayer.captures"
                " where user_id = $1 and provider = $2 and conversation_id = $3",
                user_id,
                provider,
                conversation_id,
            ),
        )
        return PendingCapture(**json.loads(text)) if text else None

    async def claim_capture(
        self, user_id: str, provider: str, conversation_id: str, capture_id: str, lease: int
    ) -> bool:
        """Leases the pending capture to one caller for `lease` seconds."""
        now = datetime.now(UTC)
        claimed = await self._run(
            user_id,
            lambda conn: conn.fetchval(
                "update memlayer.captures set claimed_until = $5"
                " where user_id = $1 and provider = $2 and conversation_id = $3"
                " and capture_id = $4 and (claimed_until is null or claimed_until < $6)"
                " returning 1",
                user_id,
                provider,
                conversation_id,
                capture_id,
                now + timedelta(seconds=lease),
                now,
            ),
        )
        return claimed is not None

    async def take_capture(
        self, user_id: str, provider: str, conversation_id: str, capture_id: str
    ) -> bool:
        taken = await self._run(
            user_id,
            lambda conn: conn.fetchval(
                "delete from memlayer.captures where user_id = $1 and provider = $2"
                " and conversation_id = $3 and capture_id = $4 returning 1",
                user_id,
                provider,
                conversation_id,
                capture_id,
            ),
        )
        return taken is not None

    # ------------------------------------------------------------------ tag vocabulary
    async def add_user_tags(self, user_id: str, tags: list[str]) -> None:
        if not tags:
            return
        # An erased user's profile is gone; a late worker must not recreate it.
        await self._run(
            user_id,
            lambda conn: conn.execute(
                "update memlayer.profiles set tag_vocabulary = array(select distinct t"
                " from unnest(tag_vocabulary || $2::text[]) t order by t) where user_id = $1",
                user_id,
                sorted(set(tags)),
            ),
        )

    async def get_user_tags(self, user_id: str) -> list[str]:
        tags = await self._run(
            user_id,
            lambda conn: conn.fetchval(
                "select tag_vocabulary from memlayer.profiles where user_id = $1", user_id
            ),
        )
        return sorted(tags or [])

    # ------------------------------------------------------------------ uploads
    async def put_upload(self, record: UploadRecord) -> None:
        values = (
            record.user_id,
            record.id,
            record.status,
            record.version,
            record.created_at,
            record.purge_after,
            record.model_dump_json(),
        )
        await self._run(
            record.user_id,
            lambda conn: _inserted(
                conn,
                "insert into memlayer.uploads (user_id, id, status, version, created_at,"
                " purge_after, record) values ($1, $2, $3, $4, $5, $6, $7::jsonb)"
                " on conflict (user_id, id) do nothing returning 1",
                values,
                "uploads",
                record,
            ),
        )

    async def get_upload(self, user_id: str, upload_id: str) -> UploadRecord | None:
        if not is_id(upload_id):
            return None
        text = await self._run(
            user_id,
            lambda conn: conn.fetchval(
                "select record::text from memlayer.uploads where user_id = $1 and id = $2",
                user_id,
                upload_id,
            ),
        )
        return UploadRecord.model_validate_json(text) if text else None

    async def update_upload(self, record: UploadRecord, *, expected_version: int) -> UploadRecord:
        saved = record.model_copy(update={"version": expected_version + 1})
        updated = await self._run(
            record.user_id,
            lambda conn: conn.fetchval(
                "update memlayer.uploads set status = $4, version = $5, purge_after = $6,"
                " record = $7::jsonb, cleanup_claim = null, cleanup_claimed_at = null"
                " where user_id = $1 and id = $2 and version = $3 returning 1",
                record.user_id,
                record.id,
                expected_version,
                saved.status,
                saved.version,
                saved.purge_after,
                saved.model_dump_json(),
            ),
        )
        if updated is None:
            raise VersionConflict(record.id)
        return saved

    async def all_uploads(self, user_id: str) -> list[UploadRecord]:
        rows = await self._run(
            user_id,
            lambda conn: conn.fetch(
                "select record::text from memlayer.uploads where user_id = $1 order by id",
                user_id,
            ),
        )
        return [UploadRecord.model_validate_json(row[0]) for row in rows]

    async def list_uploads_older_than(
        self, cutoff: datetime, *, limit: int = 100
    ) -> list[UploadRecord]:
        rows = await self._run(
            None,
            lambda conn: conn.fetch(
                "select record::text from memlayer.uploads where status = any($1)"
                " and created_at < $2 order by created_at limit $3",
                sorted(OPEN_STATUSES),
                cutoff,
                limit,
            ),
        )
        return [UploadRecord.model_validate_json(row[0]) for row in rows]

    async def delete_uploads(self, user_id: str, upload_ids: list[str]) -> int:
        ids = sorted({upload_id for upload_id in upload_ids if is_id(upload_id)})
        if ids:
            await self._run(
                user_id,
                lambda conn: conn.execute(
                    "delete from memlayer.uploads where user_id = $1 and id = any($2)",
                    user_id,
                    ids,
                ),
            )
        return len(ids)

    # ------------------------------------------------------------------ API keys
    @staticmethod
    def _api_key(row: Any) -> ApiKeyRecord:
        record = ApiKeyRecord.model_validate_json(row["record"])
        update: dict[str, Any] = {"revoked": row["revoked"]}
        if row["last_used_at"] is not None:
            update["last_used_at"] = row["last_used_at"]
        return record.model_copy(update=update)

    _API_KEY_COLUMNS = "record::text as record, revoked, last_used_at"

    async def create_api_key(self, record: ApiKeyRecord, key_hash: str) -> None:
        values = (record.user_id, record.id, key_hash, record.model_dump_json())
        await self._run(
            record.user_id,
            lambda conn: _inserted(
                conn,
                "insert into memlayer.api_keys (user_id, id, key_hash, record)"
                " values ($1, $2, $3, $4::jsonb) on conflict (user_id, id) do nothing returning 1",
                values,
                "api_keys",
                record,
            ),
        )

    async def list_api_keys(self, user_id: str) -> list[ApiKeyRecord]:
        rows = await self._run(
            user_id,
            lambda conn: conn.fetch(
                f"select {self._API_KEY_COLUMNS} from memlayer.api_keys"  # noqa: S608
                " where user_id = $1 order by id",
                user_id,
            ),
        )
        return [self._api_key(row) for row in rows]

    async def get_api_key(self, user_id: str, key_id: str) -> ApiKeyRecord | None:
        row = await self._run(
            user_id,
            lambda conn: conn.fetchrow(
                f"select {self._API_KEY_COLUMNS} from memlayer.api_keys"  # noqa: S608
                " where user_id = $1 and id = $2",
                user_id,
                key_id,
            ),
        )
        return self._api_key(row) if row else None

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The live key with this hash (resolving a key to its user spans users)."""
        row = await self._run(
            None,
            lambda conn: conn.fetchrow(
                f"select {self._API_KEY_COLUMNS} from memlayer.api_keys"  # noqa: S608
                " where key_hash = $1 and not revoked",
                key_hash,
            ),
        )
        return self._api_key(row) if row else None

    async def revoke_api_key(self, user_id: str, key_id: str, now: datetime) -> bool:
        async def op(conn: Any) -> bool:
            row = await conn.fetchrow(
                "select record::text as record, revoked from memlayer.api_keys"
                " where user_id = $1 and id = $2 for update",
                user_id,
                key_id,
            )
            if row is None:
                return False
            if row["revoked"]:
                return True
            record = ApiKeyRecord.model_validate_json(row["record"])
            revoked = record.model_copy(update={"revoked": True, "revoked_at": now})
            await conn.execute(
                "update memlayer.api_keys set revoked = true, record = $3::jsonb,"
                " expires_at = $4 where user_id = $1 and id = $2",
                user_id,
                key_id,
                revoked.model_dump_json(),
                now + timedelta(seconds=REVOKED_KEY_RETENTION_SECONDS),
            )
            return True

        return await self._run(user_id, op)

    async def delete_api_key(self, user_id: str, key_id: str) -> bool:
        deleted = await self._run(
            user_id,
            lambda conn: conn.fetchval(
                "delete from memlayer.api_keys where user_id = $1 and id = $2 returning 1",
                user_id,
                key_id,
            ),
        )
        return deleted is not None

    async def touch_api_key(self, user_id: str, key_id: str, now: datetime) -> bool:
        """Records a use; at most one write per key a minute. Never resurrects a deleted or
        revoked key."""
        touched = await self._run(
            user_id,
            lambda conn: conn.fetchval(
                "update memlayer.api_keys set last_used_at = $3"
                " where user_id = $1 and id = $2 and not revoked"
                " and (last_used_at is null or last_used_at < $4) returning 1",
                user_id,
                key_id,
                now,
                now - timedelta(seconds=TOUCH_INTERVAL_SECONDS),
            ),
        )
        return touched is not None

    # ------------------------------------------------------------------ erase and admin
    _ERASED = (
        ("memories", "memories"),
        ("jobs", "jobs"),
        ("uploads", "uploads"),
        ("api_keys", "api_keys"),
        ("connections", "connections"),
        ("captures", "captures"),
        ("idempotency_keys", "idempotency"),
        ("day_counters", "counters"),
        ("rate_limits", "rate"),
        ("profiles", "profile"),
    )

    async def erase_user(self, user_id: str) -> dict[str, int]:
        """Deletes every row of the user in one transaction; returns the counts by kind."""

        async def op(conn: Any) -> dict[str, int]:
            counts = dict.fromkeys(ITEM_KINDS, 0)
            counts["vectors"] = await conn.fetchval(
                "select count(*) from memlayer.memories"
                " where user_id = $1 and embedding is not null",
                user_id,
            )
            for table, kind in self._ERASED:
                status = await conn.execute(
                    f"delete from memlayer.{table} where user_id = $1",  # noqa: S608
                    user_id,
                )
                counts[kind] = int(status.rsplit(" ", 1)[-1])
            return counts

        return await self._run(user_id, op)

    async def count_items(
        self, *, time_budget_seconds: float = 20.0
    ) -> tuple[dict[str, int], int, bool]:
        async def op(conn: Any) -> tuple[dict[str, int], int, bool]:
            counts = dict.fromkeys(ITEM_KINDS, 0)
            for table, kind in self._ERASED:
                counts[kind] = await conn.fetchval(
                    f"select count(*) from memlayer.{table}"  # noqa: S608
                )
            counts["vectors"] = await conn.fetchval(
                "select count(*) from memlayer.memories where embedding is not null"
            )
            users = await conn.fetchval("select count(distinct user_id) from memlayer.memories")
            return counts, users, True

        return await self._run(None, op)

    async def approximate_item_count(self) -> int | None:
        """Postgres's own row estimate of memlayer's tables (as of the last analyze)."""
        try:
            estimate = await self._run(
                None,
                lambda conn: conn.fetchval(
                    "select sum(greatest(c.reltuples, 0))::bigint from pg_class c"
                    " join pg_namespace n on n.oid = c.relnamespace"
                    " where n.nspname = 'memlayer' and c.relkind = 'r'"
                ),
            )
        except Exception:
            return None
        return int(estimate) if estimate is not None else None

    # ------------------------------------------------------------------ cleanup
    _EXPIRING = (
        ("jobs", "jobs", ""),
        ("connections", "connections", ""),
        ("idempotency_keys", "idempotency", ""),
        ("rate_limits", "rate", ""),
        ("day_counters", "counters", ""),
        ("api_keys", "api_keys", " and revoked"),
    )

    async def purge_expired(self, now: datetime) -> ExpiredFound:
        async def op(conn: Any) -> ExpiredFound:
            deleted: dict[str, int] = {}
            for table, kind, extra in self._EXPIRING:
                status = await conn.execute(
                    f"delete from memlayer.{table} where expires_at < $1{extra}",  # noqa: S608
                    now,
                )
                deleted[kind] = int(status.rsplit(" ", 1)[-1])
            captures = await conn.fetch(
                "select record::text from memlayer.captures where expires_at < $1", now
            )
            uploads = await conn.fetch(
                "select record::text from memlayer.uploads where purge_after < $1", now
            )
            return ExpiredFound(
                deleted=deleted,
                captures=[PendingCapture(**json.loads(row[0])) for row in captures],
                uploads=[UploadRecord.model_validate_json(row[0]) for row in uploads],
            )

        return await self._run(None, op)

    async def claim_expired_capture(
        self, capture: PendingCapture, claim: str, now: int, stale_after: int
    ) -> bool:
        claimed = await self._run(
            None,
            lambda conn: conn.fetchval(
                "update memlayer.captures set cleanup_claim = $5, cleanup_claimed_at = $6"
                " where user_id = $1 and provider = $2 and conversation_id = $3"
                " and capture_id = $4 and expires_at = $7"
                " and (cleanup_claim is null or cleanup_claimed_at < $8) returning 1",
                capture.user_id,
                capture.provider,
                capture.conversation_id,
                capture.capture_id,
                claim,
                _at(now),
                _at(capture.expires_at),
                _at(now - stale_after),
            ),
        )
        return claimed is not None

    async def claim_upload(
        self, user_id: str, upload_id: str, version: int, claim: str, now: int, stale_after: int
    ) -> bool:
        claimed = await self._run(
            None,
            lambda conn: conn.fetchval(
                "update memlayer.uploads set cleanup_claim = $4, cleanup_claimed_at = $5"
                " where user_id = $1 and id = $2 and version = $3"
                " and (cleanup_claim is null or cleanup_claimed_at < $6) returning 1",
                user_id,
                upload_id,
                version,
                claim,
                _at(now),
                _at(now - stale_after),
            ),
        )
        return claimed is not None

    async def delete_upload_if_unchanged(
        self, user_id: str, upload_id: str, version: int, status: str
    ) -> bool:
        deleted = await self._run(
            None,
            lambda conn: conn.fetchval(
                "delete from memlayer.uploads where user_id = $1 and id = $2"
                " and version = $3 and status = $4 returning 1",
                user_id,
                upload_id,
                version,
                status,
            ),
        )
        return deleted is not None


class PostgresSearch:
    """The search port in SQL: one call of `memlayer.search` (migration
    20261202080000_search_in_one_call.sql) runs both legs, the keyword leg on the weighted
    `search_doc` tsvector (GIN), the semantic leg by cosine distance on the halfvec column
    (HNSW, or an exact scan for a user with few memories), filters as `where` clauses, fuses
    them as search/fusion.py does (its constants are arguments) and returns the hits with their
    records: a search is `begin`, that call and `commit`. Always current; `refresh` only checks,
    once per user and embedding space in a container, for ready memories whose vectors are from
    another space (or none), and asks for them to be re-embedded."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self._checked: set[tuple[str, str]] = set()

    async def refresh(self, user_id: str) -> None:
        space = _embedding_space()
        if (user_id, space) in self._checked:
            return
        stale = await self.store._run(
            user_id,
            lambda conn: conn.fetchval(
                "select count(*) from memlayer.memories where user_id = $1"
                " and status = 'ready' and embedding_space is distinct from $2",
                user_id,
                space,
            ),
        )
        if stale:
            await request_reembed(user_id, space, stale)
        self._checked.add((user_id, space))

    async def search(
        self,
        user_id: str,
        query: str,
        vector: np.ndarray | None,
        *,
        mode: SearchMode,
        filters: SearchFilters | None,
        limit: int,
        semantic_weight: float,
        min_similarity: float | None,
    ) -> list[tuple[MemoryRecord, Hit]]:
        if limit <= 0:
            return []
        depth = max(limit * 4 + 32, 100) if mode == "hybrid" else limit + limit + 32
        semantic = vector if mode in ("hybrid", "semantic") else None
        filters = filters or SearchFilters()
        args = (
            user_id,
            query if mode in ("hybrid", "keyword") else "",
            # float16 as the column holds them (exact as float4, sent binary)
            None if semantic is None else semantic.astype(np.float16).astype(np.float32).tolist(),
            _embedding_space(),
            None if filters.kinds is None else list(filters.kinds),
            None if filters.tags is None else [_normalize_tag(t) for t in filters.tags],
            filters.provider,
            None if filters.since is None else _at(filters.since),
            None if filters.until is None else _at(filters.until),
            depth,
            KEYWORD_CANDIDATES,
            EXACT_SCAN_BELOW,
            HNSW_MIN_SHARE,
            HNSW_EF_SEARCH,
            mode,
            limit,
            semantic_weight,
            min_similarity,
            fusion.RRF_K,
            fusion.RECENCY_WEIGHT,
            fusion.RECENCY_HALF_LIFE_DAYS,
            time.time(),
        )
        # relaxed_order: the index scan goes on until `depth` rows pass the filters (the
        # statement re-sorts what it returns). No JIT: compiling takes longer than any search
        # (the planner's costs pass its threshold on an exact scan of a large user's rows).
        settings = {"jit": "off", "hnsw.iterative_scan": "relaxed_order"}
        rows = await self.store._run(
            user_id, lambda conn: conn.fetch(_SEARCH_SQL, *args), settings=settings
        )
        terms = set(query_terms(query))
        found = []
        for memory_id, score, semantic_rank, keyword_rank, similarity, record in rows:
            memory = _memory(record)
            hit = Hit(
                memory_id=memory_id,
                score=round(score, 6),
                highlights=highlight_terms(memory.content, terms, HIGHLIGHT_LENGTH),
                semantic_rank=semantic_rank,
                keyword_rank=keyword_rank,
                similarity=similarity,
            )
            found.append((memory, hit))
        return found

    async def turns_around(
        self,
        user_id: str,
        memory_ids: Sequence[str],
        *,
        radius: int,
        filters: SearchFilters | None,
    ) -> dict[str, list[MemoryRecord]]:
        if not memory_ids or radius < 0:
            return {}
        where, args = _filter_sql(user_id, filters)
        n = len(args)
        sql = _TURNS_SQL.format(where=where, ids=n + 1, radius=n + 2)
        rows = await self.store._run(
            user_id, lambda conn: conn.fetch(sql, *args, list(memory_ids), radius)
        )
        found: dict[str, list[MemoryRecord]] = {}
        for row in rows:
            found.setdefault(row["hit_id"], []).append(_memory(row["record"]))
        return {hit: turns for hit, turns in found.items() if any(t.id == hit for t in turns)}


# The arguments in the order `PostgresSearch.search` passes them (see the migration).
_SEARCH_SQL = (
    "select id, score, semantic_rank, keyword_rank, similarity, record from memlayer.search("
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,"
    " $20, $21, $22)"
)


# The turns around each hit: the `radius` before it and itself with the `radius` after it, on
# the conversation index, among the turns that pass the filters (`{where}` names the inner
# table's columns); `turns_around` drops a hit the filters leave out.
_TURNS_SQL = (
    "with hit as (select id, provider, conversation_id, occurred_at from memlayer.memories"
    " where user_id = $1 and id = any(${ids}::text[]) and conversation_id is not null)"
    " select hit.id as hit_id, turn.record from hit cross join lateral ("
    " (select id, occurred_at, record::text as record from memlayer.memories"
    "  where {where} and conversation_id = hit.conversation_id"
    "  and provider is not distinct from hit.provider"
    "  and (occurred_at, id) < (hit.occurred_at, hit.id)"
    "  order by occurred_at desc, id desc limit ${radius})"
    " union all"
    " (select id, occurred_at, record::text as record from memlayer.memories"
    "  where {where} and conversation_id = hit.conversation_id"
    "  and provider is not distinct from hit.provider"
    "  and (occurred_at, id) >= (hit.occurred_at, hit.id)"
    "  order by occurred_at, id limit ${radius} + 1)"
    " ) turn order by hit.id, turn.occurred_at, turn.id"
)


def _embedding_space() -> str:
    space: str = get_embedder(get_settings()).space
    return space


def _filter_sql(user_id: str, filters: SearchFilters | None) -> tuple[str, list[Any]]:
    """The search filters as a `where` over memlayer.memories, with their arguments."""
    conditions = ["user_id = $1"]
    args: list[Any] = [user_id]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if filters is not None:
        if filters.kinds is not None:
            conditions.append(f"kind = any({arg(list(filters.kinds))}::text[])")
        if filters.tags is not None:
            tags = [_normalize_tag(t) for t in filters.tags]
            conditions.append(f"search_tags && {arg(tags)}::text[]")
        if filters.provider is not None:
            conditions.append(f"provider = {arg(filters.provider)}")
        if filters.since is not None:
            conditions.append(f"occurred_at >= {arg(_at(filters.since))}")
        if filters.until is not None:
            conditions.append(f"occurred_at < {arg(_at(filters.until))}")
    return " and ".join(conditions), args
