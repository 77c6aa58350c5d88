"""Durable local state: moto's DynamoDB items, S3 objects and SQS messages in a directory.

`make dev` passes `--state-dir .localcloud/state`; tests and `make invoke` stay ephemeral
unless given one. The state is one JSON-lines snapshot file, rewritten whole:

    {"format": "memlayer-localcloud-state", "version": 1, "saved_at": ...}   header
    {"t": "<table>", "i": {<item attributes, DynamoDB JSON>}}                 one per item
    {"b": "<bucket>", "k": "<key>", "v": "<base64>", "m": {<metadata>}}        one per object
    {"q": "<queue>", "m": {<message>}}                                         one per message
    {"end": <lines before it>, "crc32": <of those lines>}                      footer

Writes are atomic (a temporary file, fsync, rename; the previous snapshot is kept as
`snapshot.prev.jsonl`), so a crash leaves the last complete snapshot. A snapshot whose footer
is missing or wrong (truncated, corrupted) is set aside and the previous one is used.

Snapshots run in the background while anything changed, at most every `min_interval`
seconds and never more often than `cost_factor` times their own duration, so a large state
cannot eat the ingest throughput. Only DynamoDB needs care to capture consistently: the
capture holds moto's DynamoDB lock just long enough to list the items, and because
`UpdateItem` is made copy-on-write, a listed item never changes afterwards, so its serialized
line is cached between snapshots (only new or changed items are serialized again).
Restore writes straight into moto's backends (no API calls): 10k memories (60k items) took
12 s on a loaded machine (the 10k ingest bench). Messages that were in flight when the cloud
stopped are visible again at once (their consumer is gone); delayed ones keep their remaining
delay; receive counts are kept, so redrive to the DLQs still happens.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import motofixes

log = logging.getLogger("localcloud")

FORMAT = "memlayer-localcloud-state"
VERSION = 1
SNAPSHOT = "snapshot.jsonl"
PREVIOUS = "snapshot.prev.jsonl"


class CorruptSnapshot(ValueError):
    pass


@dataclass
class RestoreReport:
    path: Path | None = None
    items: int = 0
    objects: int = 0
    messages: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.path is None:
            return "no saved state: starting empty"
        return (
            f"restored {self.items} items, {self.objects} objects, {self.messages} messages "
            f"from {self.path} in {self.seconds:.2f} s"
        )


def _backends(account_id: str, region: str) -> tuple[Any, Any, Any]:
    from moto.dynamodb.models import dynamodb_backends
    from moto.s3.models import s3_backends
    from moto.sqs.models import sqs_backends

    return (
        dynamodb_backends[account_id][region],
        s3_backends[account_id]["global"],
        sqs_backends[account_id][region],
    )


def patch_copy_on_write_updates() -> None:
    """UpdateItem replaces the stored item with a copy before changing it, so the item
    objects a snapshot listed never change under it (moto updates items in place)."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend.update_item, "_localcloud_cow", False):
        return
    original = DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kw: Any) -> Any:
        table = self.tables.get(table_name)
        if table is not None:
            with contextlib.suppress(Exception):  # a bad key: moto reports it below
                hash_value, range_value = self.get_keys_value(table, key)
                item = table.get_item(hash_value, range_value)
                if item is not None and range_value is not None:
                    table.items[hash_value][range_value] = copy.deepcopy(item)
                elif item is not None:
                    table.items[hash_value] = copy.deepcopy(item)
        return original(self, table_name, key, *args, **kw)

    update_item._localcloud_cow = True  # type: ignore[attr-defined]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]


class LocalState:
    """Save and restore the local cloud's data in `directory`."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        account_id: str = "123456789012",
        region: str = "us-east-1",
        min_interval: float = 2.0,
        cost_factor: float = 10.0,
        tables: Collection[str] | None = None,
        buckets: Collection[str] | None = None,
        queues: Collection[str] | None = None,
    ) -> None:
        """`tables`, `buckets`, `queues`: the names this state covers (None: all of moto's,
        but another LocalCloud sharing the process must not be saved or restored with it)."""
        self.directory = Path(directory)
        self._only = {"t": tables, "b": buckets, "q": queues}
        self.account_id = account_id
        self.region = region
        self.min_interval = min_interval
        self.cost_factor = cost_factor
        self.last_save_seconds = 0.0
        self.saves = 0
        self._lines: dict[int, tuple[Any, str]] = {}  # id(item or S3 key) -> (it, its line)
        self._saved_signature: Any = None
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _covers(self, kind: str, name: str) -> bool:
        names = self._only[kind]
        return names is None or name in names

    # ------------------------------------------------------------------ restore

    def restore(self) -> RestoreReport:
        """Load the newest good snapshot into moto (tables, buckets and queues must exist)."""
        patch_copy_on_write_updates()
        report = RestoreReport()
        started = time.monotonic()
        for name in (SNAPSHOT, PREVIOUS):
            path = self.directory / name
            if not path.exists():
                continue
            try:
                lines = self._read(path)
            except (OSError, CorruptSnapshot) as exc:
                aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
                with contextlib.suppress(OSError):
                    path.rename(aside)
                problem = f"state snapshot {path} is unusable ({exc}); moved to {aside.name}"
                log.warning("%s", problem)
                report.problems.append(problem)
                continue
            self._apply(lines, report)
            report.path = path
            break
        report.seconds = time.monotonic() - started
        self._saved_signature = self._signature()
        return report

    @staticmethod
    def _read(path: Path) -> list[dict[str, Any]]:
        raw = path.read_bytes()
        body, sep, footer_line = raw.rstrip(b"\n").rpartition(b"\n")
        try:
            footer = json.loads(footer_line)
        except ValueError:
            footer = None
        if not sep or not isinstance(footer, dict) or "end" not in footer:
            raise CorruptSnapshot("no footer: the file is truncated")
        body += b"\n"
        if zlib.crc32(body) != footer.get("crc32"):
            raise CorruptSnapshot("checksum mismatch")
        lines = [json.loads(line) for line in body.splitlines()]
        if len(lines) != footer["end"] or lines[0].get("format") != FORMAT:
            raise CorruptSnapshot("unexpected header or line count")
        if lines[0].get("version") != VERSION:
            raise CorruptSnapshot(f"snapshot version {lines[0].get('version')} unsupported")
        return lines[1:]

    def _apply(self, lines: list[dict[str, Any]], report: RestoreReport) -> None:
        from moto.dynamodb.models.dynamo_type import DynamoType, Item
        from moto.sqs.models import Message

        dynamodb, s3, sqs = _backends(self.account_id, self.region)
        queues = {queue.name: queue for queue in sqs.queues.values()}
        missing: set[str] = set()
        now_ms = time.time() * 1000
        for line in lines:
            kind = next(k for k in ("t", "b", "q") if k in line)
            if not self._covers(kind, line[kind]):
                continue
            if kind == "t":
                table = dynamodb.tables.get(line["t"])
                if table is None:
                    missing.add(f"table {line['t']}")
                    continue
                attrs = line["i"]
                hash_value = DynamoType(attrs[table.hash_key_attr])
                if table.range_key_attr is not None:
                    range_value = DynamoType(attrs[table.range_key_attr])
                    table.items[hash_value][range_value] = Item(hash_value, range_value, attrs)
                else:
                    table.items[hash_value] = Item(hash_value, None, attrs)
                report.items += 1
            elif kind == "b":
                if line["b"] not in s3.buckets:
                    missing.add(f"bucket {line['b']}")
                    continue
                key = s3.put_object(
                    line["b"], line["k"], base64.b64decode(line["v"]), disable_notification=True
                )
                key.set_metadata(line.get("m") or {}, replace=True)
                report.objects += 1
            else:
                queue = queues.get(line["q"])
                if queue is None:
                    missing.add(f"queue {line['q']}")
                    continue
                data = line["m"]
                message = Message(data["id"], data["body"], data.get("system_attributes"))
                for name in (
                    "message_attributes",
                    "sender_id",
                    "sent_timestamp",
                    "approximate_first_receive_timestamp",
                    "approximate_receive_count",
                    "deduplication_id",
                    "group_id",
                    "sequence_number",
                ):
                    if name in data:
                        setattr(message, name, data[name])
                # In flight when saved: its consumer is gone, so it is visible again now.
                message.delayed_until = now_ms + max(0.0, data.get("delay_left_ms", 0.0))
                queue._messages.append(message)
                report.messages += 1
        for table in list(dynamodb.tables.values()):
            table.__dict__.pop(motofixes.SORTED_KEYS_ATTR, None)  # rebuilt on first query
        for what in sorted(missing):
            problem = f"saved state for {what}, which the template no longer has: skipped"
            log.warning("%s", problem)
            report.problems.append(problem)

    # ------------------------------------------------------------------ save

    def _signature(self) -> tuple[Any, ...]:
        """Changes whenever the data may have: DynamoDB writes, messages, objects."""
        _, s3, sqs = _backends(self.account_id, self.region)
        messages = tuple(
            (name, len(q._messages), sum(m.approximate_receive_count for m in q._messages))
            for name, q in sorted(sqs.queues.items())
        )
        objects = tuple(
            (
                name,
                len(bucket.keys),
                max((str(k.last_modified) for k in bucket.keys.values()), default=""),
            )
            for name, bucket in sorted(s3.buckets.items())
        )
        return motofixes.dynamodb_writes(), messages, tuple(objects)

    def _capture(self) -> list[tuple[str, list[Any]]]:
        dynamodb, _, _ = _backends(self.account_id, self.region)
        with motofixes.dynamodb_lock:
            tables = []
            for name, table in dynamodb.tables.items():
                if not self._covers("t", name):
                    continue
                if table.range_key_attr is not None:
                    items = [i for partition in table.items.values() for i in partition.values()]
                else:
                    items = list(table.items.values())
                tables.append((name, items))
            return tables

    def save(self) -> bool:
        """Write a snapshot if anything changed since the last one; True if written."""
        with self._save_lock:
            signature = self._signature()
            if signature == self._saved_signature:
                return False
            started = time.monotonic()
            self._write(self._lines_for(self._capture()))
            self._saved_signature = signature
            self.last_save_seconds = time.monotonic() - started
            self.saves += 1
            return True

    def _lines_for(self, tables: list[tuple[str, list[Any]]]) -> list[str]:
        _, s3, sqs = _backends(self.account_id, self.region)
        header = {"format": FORMAT, "version": VERSION, "saved_at": time.time()}
        out = [json.dumps(header)]
        cache: dict[int, tuple[Any, str]] = {}
        for name, items in tables:
            prefix = '{"t": ' + json.dumps(name) + ', "i": '
            for item in items:
                hit = self._lines.get(id(item))
                if hit is None or hit[0] is not item:
                    attrs = {k: v.to_json() for k, v in item.attrs.items()}
                    hit = (item, prefix + json.dumps(attrs) + "}")
                cache[id(item)] = hit
                out.append(hit[1])
        for bucket_name, bucket in list(s3.buckets.items()):
            if not self._covers("b", bucket_name):
                continue
            for key in list(bucket.keys.values()):
                # An overwrite makes a new key object, so a key's line can be reused as is.
                hit = self._lines.get(id(key))
                if hit is None or hit[0] is not key:
                    value = base64.b64encode(key.value).decode()
                    line = {"b": bucket_name, "k": key.name, "v": value, "m": dict(key.metadata)}
                    hit = (key, json.dumps(line))
                cache[id(key)] = hit
                out.append(hit[1])
        self._lines = cache
        now_ms = time.time() * 1000
        for queue in list(sqs.queues.values()):
            if not self._covers("q", queue.name):
                continue
            for message in list(queue._messages):
                data = {
                    "id": message.id,
                    "body": message.body,
                    "system_attributes": message.system_attributes,
                    "message_attributes": message.message_attributes,
                    "sender_id": message.sender_id,
                    "sent_timestamp": message.sent_timestamp,
                    "approximate_first_receive_timestamp": (
                        message.approximate_first_receive_timestamp
                    ),
                    "approximate_receive_count": message.approximate_receive_count,
                    "deduplication_id": message.deduplication_id,
                    "group_id": message.group_id,
                    "sequence_number": message.sequence_number,
                    "delay_left_ms": max(0.0, message.delayed_until - now_ms),
                }
                out.append(json.dumps({"q": queue.name, "m": data}))
        return out

    def _write(self, lines: list[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        body = ("\n".join(lines) + "\n").encode()
        footer = json.dumps({"end": len(lines), "crc32": zlib.crc32(body)}).encode() + b"\n"
        current = self.directory / SNAPSHOT
        tmp = self.directory / f"{SNAPSHOT}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(body)
            handle.write(footer)
            handle.flush()
            os.fsync(handle.fileno())
        if current.exists():
            os.replace(current, self.directory / PREVIOUS)
        os.replace(tmp, current)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    # ------------------------------------------------------------------ background

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="localcloud-state", daemon=True)
        self._thread.start()

    def interval(self) -> float:
        """Seconds between snapshots: min_interval, or cost_factor times the last one's."""
        return max(self.min_interval, self.cost_factor * self.last_save_seconds)

    def _run(self) -> None:
        while not self._stop.wait(self.interval()):
            try:
                self.save()
            except Exception:  # keep saving later; the previous snapshot is intact
                log.exception("saving the local state failed")

    def stop(self) -> None:
        """Stop the background saver and write the final snapshot."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        started = time.monotonic()
        if self.save():
            log.info("state saved to %s in %.2f s", self.directory, time.monotonic() - started)
