"""Fixes to moto (it runs in this process): S3 event fidelity, atomic DynamoDB requests, and
DynamoDB costs that grew with the table (see "DynamoDB scale" below).

moto 5 url-encodes the whole object key with `quote_plus`, so `uploads/a b.txt` arrives as
`uploads%2Fa+b.txt`; S3 keeps the slashes (`uploads/a+b.txt`). It also leaves out fields
real records carry (userIdentity, requestParameters, responseElements, sequencer). Handlers
written against the local cloud must also work on AWS, so the records are made S3-shaped.
"""

from __future__ import annotations

import bisect
import logging
import os
import secrets
import string
import threading
import time
from array import array
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote_plus, unquote_plus

log = logging.getLogger("localcloud")


def _fix_record(record: dict[str, Any]) -> None:
    s3 = record.get("s3") or {}
    obj = s3.get("object") or {}
    if isinstance(obj.get("key"), str):
        obj["key"] = quote_plus(unquote_plus(obj["key"]), safe="/")
    obj.setdefault("sequencer", secrets.token_hex(9).upper())
    record.setdefault("userIdentity", {"principalId": "AWS:AIDALOCALCLOUD"})
    record.setdefault("requestParameters", {"sourceIPAddress": "127.0.0.1"})
    record.setdefault(
        "responseElements",
        {"x-amz-request-id": secrets.token_hex(8).upper(), "x-amz-id-2": secrets.token_hex(32)},
    )


def patch_moto_s3_events() -> None:
    try:
        from moto.s3 import notifications
    except ImportError:  # pragma: no cover
        return
    original = getattr(notifications, "_get_s3_event", None)
    if original is None or getattr(original, "_localcloud", False):
        if original is None:
            log.debug("moto has no _get_s3_event; S3 event keys are left as moto makes them")
        return

    def get_s3_event(*args: Any, **kwargs: Any) -> Any:
        event = original(*args, **kwargs)
        for record in event.get("Records") or []:
            _fix_record(record)
        return event

    get_s3_event._localcloud = True  # type: ignore[attr-defined]
    notifications._get_s3_event = get_s3_event


# Held while moto's DynamoDB serves a request (and while the state snapshot lists items).
dynamodb_lock = threading.Lock()
_READ_ACTIONS = frozenset(
    {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable"}
    | {"ListTables", "DescribeTimeToLive", "DescribeContinuousBackups", "ListTagsOfResource"}
)
_writes = [0]


def dynamodb_writes() -> int:
    """How many DynamoDB requests that may change data moto has served (the state saver
    compares it between snapshots)."""
    return _writes[0]


class DynamoDBTimings:
    """How long moto's DynamoDB handler takes per call, by action (for `serve
    --dynamodb-stats` and the ingest bench)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, array[float]] = {}

    def record(self, action: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(action, array("d")).append(seconds * 1000)

    def summary(self) -> dict[str, dict[str, float]]:
        with self._lock:
            samples = {action: sorted(values) for action, values in self._samples.items()}
        return {
            action: {
                "calls": len(values),
                "p50_ms": round(values[len(values) // 2], 3),
                "p95_ms": round(values[min(len(values) - 1, int(len(values) * 0.95))], 3),
                "total_s": round(sum(values) / 1000, 2),
            }
            for action, values in sorted(samples.items())
        }


dynamodb_timings = DynamoDBTimings()


def serialize_moto_dynamodb() -> None:
    """moto serves requests on many threads without locking, so parallel transactions can
    overshoot their conditions. Real DynamoDB applies each request atomically; serializing
    moto's DynamoDB handler gives the local cloud the same semantics (idempotent). Each
    call's handler time is recorded in `dynamodb_timings`."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_serialized", False):
        return
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with dynamodb_lock:
            started = time.perf_counter()
            try:
                return original(self)
            finally:
                target = str(self.headers.get("X-Amz-Target", "")) if self.headers else ""
                action = target.rpartition(".")[2]
                if action not in _READ_ACTIONS:
                    _writes[0] += 1
                dynamodb_timings.record(action, time.perf_counter() - started)

    call_action._serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


# ---------------------------------------------------------------------------- DynamoDB scale
#
# moto 5.2 spends time proportional to the whole table on two hot calls, so the local cloud
# slowed down (and grew) with every memory stored:
#   * TransactWriteItems deep-copies every table it names before running (to roll back);
#   * Query on the table walks every item of every partition, then sorts the partition.
# The fixes keep moto's semantics: a transaction snapshots only the items it touches, and a
# table query starts from a sorted key list of just the queried partition (kept in step with
# put/delete) and hands that narrowed candidate list to moto's own query code.


def _item_key(table: Any, op_type: str, op: dict[str, Any]) -> tuple[Any, Any] | None:
    """(hash, range) DynamoTypes of the item a transaction operation writes, or None when
    the operation is malformed (moto's own code then raises the right error)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    attrs = op.get("Item") if op_type == "Put" else op.get("Key")
    if not isinstance(attrs, dict) or table.hash_key_attr not in attrs:
        return None
    range_attr = table.range_key_attr
    if range_attr is not None and range_attr not in attrs:
        return None
    try:
        hash_value = DynamoType(attrs[table.hash_key_attr])
        return hash_value, DynamoType(attrs[range_attr]) if range_attr else None
    except Exception:  # malformed attribute value: moto reports it
        return None


def _restore_item(table: Any, hash_value: Any, range_value: Any, item: Any) -> None:
    if item is None:
        table.delete_item(hash_value, range_value)
    elif range_value is not None:
        had = range_value in table.items[hash_value]
        table.items[hash_value][range_value] = item
        if not had:
            _index_add(table, item)
    else:
        table.items[hash_value] = item


def patch_moto_dynamodb_transactions() -> None:
    """TransactWriteItems with a rollback journal of the touched items instead of a deep copy
    of every table (moto 5.2.5's `DynamoDBBackend.transact_write_items` otherwise)."""
    import copy

    from moto.dynamodb import models
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    backend_cls = models.DynamoDBBackend
    if getattr(backend_cls.transact_write_items, "_localcloud", False):
        return

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        # Snapshot of every item the transaction may write, taken before any write.
        journal: dict[tuple[str, Any, Any], tuple[Any, Any, Any, Any]] = {}
        streams: dict[str, tuple[Any, int]] = {}
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            if table is None or op_type == "ConditionCheck":
                continue
            if table.stream_shard is not None:
                streams.setdefault(table.name, (table.stream_shard, len(table.stream_shard.items)))
            key = _item_key(table, op_type, op)
            if key is not None and (table.name, *key) not in journal:
                current = table.get_item(*key)
                journal[(table.name, *key)] = (table, *key, copy.deepcopy(current))

        def rollback() -> None:
            for table, hash_value, range_value, item in journal.values():
                _restore_item(table, hash_value, range_value, item)
            for shard, length in streams.values():
                del shard.items[length:]

        target_items: set[tuple[str, str]] = set()
        errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
        for entry in transact_items:
            original_item: dict[str, Any] | None = None
            if len(entry) > 1:
                raise TransactWriteSingleOpException
            try:
                op_type, op = next(iter(entry.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                condition_expression = op.get("ConditionExpression")
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    attrs = op["Item"]
                    table = self.get_table(table_name)
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                unique = (str(table_name), str(dict(sorted(key.items()))))
                if unique in target_items:
                    raise MultipleTransactionsException()
                target_items.add(unique)

                current = self.get_item(table_name, key)
                if condition_expression is not None:
                    condition = get_filter_expression(condition_expression, names, values)
                    if not condition.expr(current):
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)
                # The condition held just above, and nothing else runs in DynamoDB meanwhile
                # (serialized), so the write does not evaluate it again.
                if op_type == "Put":
                    self.put_item(
                        table_name,
                        op["Item"],
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                elif op_type == "Delete":
                    self.delete_item(
                        table_name,
                        key,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                elif op_type == "Update":
                    self.update_item(
                        table_name,
                        key,
                        update_expression=op["UpdateExpression"],
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                rollback()
                raise
            except ConditionalCheckFailed as exc:
                errors.append(("ConditionalCheckFailed", str(exc.message), original_item))
            except Exception as exc:  # moto reports any other failure per item, too
                errors.append((type(exc).__name__, str(exc), original_item))
        if any(code is not None for code, _, _ in errors):
            rollback()
            raise TransactionCanceledException(errors)

    transact_write_items._localcloud = True  # type: ignore[attr-defined]
    backend_cls.transact_write_items = transact_write_items  # type: ignore[method-assign]


# Sorted range keys per partition, for tables whose range key is a string: table attribute
# name -> {hash DynamoType: [range DynamoType, sorted by value]}. Built on a partition's first
# query, then kept in step by put_item/delete_item.
SORTED_KEYS_ATTR = "_localcloud_sorted_keys"


def _range_value(key: Any) -> str:
    return str(key.value)


def _index_add(table: Any, item: Any) -> None:
    index = table.__dict__.get(SORTED_KEYS_ATTR)
    keys = index.get(item.hash_key) if index is not None else None
    if keys is None:
        return
    position = bisect.bisect_left(keys, item.range_key.value, key=_range_value)
    if position == len(keys) or keys[position] != item.range_key:
        keys.insert(position, item.range_key)


def _index_remove(table: Any, hash_value: Any, range_value: Any) -> None:
    index = table.__dict__.get(SORTED_KEYS_ATTR)
    keys = index.get(hash_value) if index is not None else None
    if keys is None:
        return
    position = bisect.bisect_left(keys, range_value.value, key=_range_value)
    if position < len(keys) and keys[position] == range_value:
        del keys[position]


def _sorted_keys(table: Any, hash_value: Any) -> list[Any]:
    index = table.__dict__.setdefault(SORTED_KEYS_ATTR, {})
    keys = index.get(hash_value)
    if keys is None:
        partition = table.items.get(hash_value) or {}
        keys = index[hash_value] = sorted(partition, key=_range_value)
    return keys


def _candidate_slice(
    keys: list[Any],
    comparison: str | None,
    bounds: list[Any],
    start_after: str | None,
    forward: bool,
    limit: int | None,
) -> list[Any]:
    """The sorted range keys matching a query's key condition after its start key, cut to
    limit + 1 (moto needs the next match to decide LastEvaluatedKey). moto re-checks them."""
    values = [str(b.value) for b in bounds]
    comparison = comparison.upper() if comparison else None
    lo, hi = 0, len(keys)
    if comparison in ("EQ", "=", "BETWEEN", "GE", ">=", "BEGINS_WITH"):
        lo = bisect.bisect_left(keys, values[0], key=_range_value)
    elif comparison in ("GT", ">"):
        lo = bisect.bisect_right(keys, values[0], key=_range_value)
    if comparison in ("EQ", "=", "LE", "<="):
        hi = bisect.bisect_right(keys, values[0], key=_range_value)
    elif comparison in ("LT", "<"):
        hi = bisect.bisect_left(keys, values[0], key=_range_value)
    elif comparison == "BETWEEN":
        hi = bisect.bisect_right(keys, values[1], key=_range_value)
    elif comparison == "BEGINS_WITH":
        hi = lo
        while hi < len(keys) and _range_value(keys[hi]).startswith(values[0]):
            hi += 1
    elif comparison is not None and comparison not in ("GE", ">=", "GT", ">"):
        limit = None  # an unknown comparison: moto filters the whole partition, uncut
    if start_after is not None:
        if forward:
            lo = max(lo, bisect.bisect_right(keys, start_after, key=_range_value))
        else:
            hi = min(hi, bisect.bisect_left(keys, start_after, key=_range_value))
    if limit is None:
        return keys[lo:hi]
    if forward:
        return keys[lo : min(hi, lo + limit + 1)]
    return keys[max(lo, hi - limit - 1) : hi]


def patch_moto_dynamodb_queries() -> None:
    """Table queries read one partition's key range instead of walking the whole table."""
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "_localcloud", False):
        return
    original_query = Table.query
    original_put = Table.put_item
    original_delete = Table.delete_item

    class _Candidates(Table):  # type: ignore[misc]
        """The table as moto's query sees it, holding only the precomputed candidates."""

        def all_items(self) -> list[Any]:
            return self.__dict__["_localcloud_candidates"]  # type: ignore[no-any-return]

    def query(
        self: Any,
        hash_key: Any,
        range_comparison: str | None,
        range_objs: list[Any],
        limit: int | None,
        exclusive_start_key: dict[str, Any] | None,
        scan_index_forward: bool,
        projection_expressions: Any,
        index_name: str | None = None,
        consistent_read: bool = False,
        filter_expression: Any = None,
        hash_key_conditions: Any = None,
        range_key_conditions: Any = None,
        **filter_kwargs: Any,
    ) -> Any:
        args = (hash_key, range_comparison, range_objs, limit, exclusive_start_key)
        args += (scan_index_forward, projection_expressions, index_name, consistent_read)
        args += (filter_expression,)
        kwargs = {
            "hash_key_conditions": hash_key_conditions,
            "range_key_conditions": range_key_conditions,
            **filter_kwargs,
        }
        plain = (
            index_name is None
            and hash_key is not None
            and self.range_key_type == "S"
            and not filter_kwargs
            and len(range_key_conditions or []) <= 1
        )
        start_after: str | None = None
        if plain and exclusive_start_key:
            start_hash = exclusive_start_key.get(self.hash_key_attr)
            start_range = exclusive_start_key.get(self.range_key_attr) or {}
            plain = start_hash == {hash_key.type: hash_key.value} and "S" in start_range
            start_after = start_range.get("S")
        if not plain:
            return original_query(self, *args, **kwargs)
        keys = _candidate_slice(
            _sorted_keys(self, hash_key),
            range_comparison,
            list(range_objs or []),
            start_after,
            scan_index_forward is not False,
            limit,
        )
        partition = self.items.get(hash_key) or {}
        view = object.__new__(_Candidates)
        view.__dict__.update(self.__dict__)
        view.__dict__["_localcloud_candidates"] = [partition[k] for k in keys if k in partition]
        return original_query(view, *args, **kwargs)

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = original_put(self, *args, **kwargs)
        if item.range_key is not None and SORTED_KEYS_ATTR in self.__dict__:
            _index_add(self, item)
        return item

    def delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        item = original_delete(self, hash_key, range_key)
        if item is not None and range_key is not None:
            _index_remove(self, hash_key, range_key)
        return item

    for fn in (query, put_item, delete_item):
        fn._localcloud = True  # type: ignore[attr-defined]
    query._original = original_query  # type: ignore[attr-defined]  # tests compare both
    Table.query = query  # type: ignore[method-assign]
    Table.put_item = put_item  # type: ignore[method-assign]
    Table.delete_item = delete_item  # type: ignore[method-assign]


def patch_moto_dynamodb_scans() -> None:
    """A table Scan walks the table in key order from its start key, and copies only the items
    its filter keeps. moto 5.2 sorted the whole table and compared every item with the start
    key on each page (a full paged Scan was quadratic: the cleanup sweep's Scans of a
    10k-memory table held DynamoDB for about a minute), and deep-copied every scanned item
    before filtering. Pages, Limit, the 1 MB page size, ScannedCount, LastEvaluatedKey,
    segments, filters and projections are moto's (a test compares them page by page)."""
    import copy

    from moto.dynamodb.models import table as table_module
    from moto.dynamodb.models.dynamo_type import DynamoType

    table_cls = table_module.Table
    if getattr(table_cls.scan, "_localcloud", False):
        return
    original_scan = table_cls.scan

    def ordered_after(table: Any, start: dict[str, Any] | None) -> Iterator[Any]:
        start_hash = start_range = None
        if start is not None:
            start_hash = DynamoType(start[table.hash_key_attr])
            start_range = str(start[table.range_key_attr]["S"])
        for hash_value in sorted(table.items):
            if start_hash is not None and hash_value < start_hash:
                continue
            keys = _sorted_keys(table, hash_value)
            first = 0
            if start_hash is not None and hash_value == start_hash:
                first = bisect.bisect_right(keys, start_range, key=_range_value)
            partition = table.items.get(hash_value) or {}
            for range_value in keys[first:]:
                item = partition.get(range_value)
                if item is not None:
                    yield item

    def passes(item: Any, filters: dict[str, Any]) -> bool:
        """moto's legacy ScanFilter test."""
        for attribute_name, (operator, values) in filters.items():
            attribute = item.attrs.get(attribute_name)
            if attribute:
                if not attribute.compare(operator, values):
                    return False
            elif operator != "NULL":
                return False
        return True

    def scan(
        self: Any,
        filters: dict[str, Any],
        limit: int,
        exclusive_start_key: dict[str, Any] | None,
        filter_expression: Any = None,
        index_name: str | None = None,
        consistent_read: bool = False,
        projection_expression: list[list[str]] | None = None,
        segments: tuple[Any, Any] = (None, None),
    ) -> Any:
        start_range = (exclusive_start_key or {}).get(self.range_key_attr) or {}
        plain = (
            index_name is None
            and self.range_key_type == "S"
            and (
                exclusive_start_key is None
                or (self.hash_key_attr in exclusive_start_key and "S" in start_range)
            )
        )
        if not plain:
            return original_scan(
                self,
                filters,
                limit,
                exclusive_start_key,
                filter_expression,
                index_name,
                consistent_read,
                projection_expression,
                segments,
            )
        results: list[Any] = []
        taken, result_size, scanned_count = 0, 0, 0
        last_taken, last_evaluated_key = None, None
        for item in ordered_after(self, exclusive_start_key):
            if not item.is_within_segment(segments):
                continue
            size = item.size()
            if taken == limit or result_size + size > table_module.RESULT_SIZE_LIMIT:
                last_evaluated_key = self._get_last_evaluated_key(last_taken, None)
                break
            if passes(item, filters):
                taken, last_taken = taken + 1, item
                result_size += size
                if filter_expression is None or filter_expression.expr(item):
                    results.append(copy.deepcopy(item))
            scanned_count += 1
        if projection_expression:
            results = [r.project(projection_expression) for r in results]
        return results, scanned_count, last_evaluated_key

    scan._localcloud = True  # type: ignore[attr-defined]
    scan._original = original_scan  # type: ignore[attr-defined]  # tests compare both
    table_cls.scan = scan  # type: ignore[method-assign]


def patch_moto_dynamodb_expressions() -> None:
    """UpdateItem was the costliest part of a transaction (two thirds of its time): moto
    parses each update expression twice per call (the handler and the backend) and its
    validators rebuild their node-type map for every node they visit. The parse is
    remembered per expression string (the validator works on its own copy of the tree, so the
    remembered tree never changes) and each validator's map is built once. That copy was a
    `copy.deepcopy` (a quarter of an UpdateItem): the tree is nodes (`type`, `children`,
    `parent`) over strings and numbers, so it is cloned node by node, parents pointing into
    the clone as deepcopy's would; any other tree is deep-copied as before."""
    import copy
    import functools

    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    if getattr(UpdateExpressionParser.make, "_localcloud", False):
        return
    parse = functools.lru_cache(maxsize=4096)(UpdateExpressionParser.make)

    def make(cls: Any, expression_str: str) -> Any:
        return parse(expression_str)

    def processing_map(self: Any) -> dict[Any, Any]:
        mapping = self.__dict__.get("_localcloud_map")
        if mapping is None:
            mapping = self.__dict__["_localcloud_map"] = self._processing_map()
        return mapping  # type: ignore[no-any-return]

    def nodes_to_be_processed(self: Any) -> tuple[Any, ...]:
        kinds = self.__dict__.get("_localcloud_kinds")
        if kinds is None:
            kinds = self.__dict__["_localcloud_kinds"] = tuple(processing_map(self))
        return kinds  # type: ignore[no-any-return]

    def process(self: Any, node: Any) -> Any:
        for class_key, processor in processing_map(self).items():
            if isinstance(node, class_key):
                return processor(node)
        return None

    leaf_types = (str, int, float, bool, type(None))

    def clone_tree(tree: Any) -> Any:
        if not isinstance(tree, Node) or tree.parent is not None:
            return copy.deepcopy(tree)
        clones: dict[int, Any] = {}
        originals: list[Any] = []

        def clone(node: Any) -> Any:
            if id(node) in clones:
                return clones[id(node)]
            new = object.__new__(type(node))
            clones[id(node)] = new
            originals.append(node)
            attrs = dict(node.__dict__)
            children = attrs.get("children")
            if children is not None:
                if type(children) is not list:
                    raise TypeError
                copied = []
                for child in children:
                    if isinstance(child, Node):
                        copied.append(clone(child))
                    elif type(child) in leaf_types:
                        copied.append(child)
                    else:
                        raise TypeError
                attrs["children"] = copied
            if set(attrs) - {"type", "children", "parent"}:
                raise TypeError
            new.__dict__.update(attrs)
            return new

        try:
            root = clone(tree)
            for node in originals:
                parent = node.parent
                if parent is not None and id(parent) not in clones:
                    raise TypeError  # points outside the tree: deepcopy would copy it too
                clones[id(node)].parent = None if parent is None else clones[id(parent)]
        except TypeError:
            return copy.deepcopy(tree)
        return root

    # The first three of the validator's ten passes (one SET/ADD/REMOVE clause each, no
    # overlapping paths, no key attribute updated) look at the expression alone: a remembered
    # tree that passed them with the same names and key attributes passes them again.
    checks_only = (
        validators.ActionCountValidator,
        validators.OverlappingPathsValidator,
        validators.UpdateHashRangeKeyValidator,
    )
    passed: dict[tuple[Any, ...], None] = {}
    init_validator = validators.UpdateExpressionValidator.__init__
    validate = validators.UpdateExpressionValidator.validate

    def remembering_init(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        init_validator(self, expression, *args, **kwargs)
        names = self.expression_attribute_names or {}
        self._localcloud_key = (
            id(expression),
            expression,  # held, so its id is not reused while remembered
            tuple(sorted(names.items())),
            tuple(self.table.table_key_attrs),
        )

    def validate_once(self: Any) -> Any:
        key = self._localcloud_key
        if key not in passed:
            node = validate(self)
            if len(passed) >= 4096:
                passed.clear()
            passed[key] = None
            return node
        node = self.node_to_validate
        for processor in self.processors:
            if not isinstance(processor, checks_only):
                node = processor.traverse(node)
        return node

    make._localcloud = True  # type: ignore[attr-defined]
    clone_tree._original = validators.deepcopy  # type: ignore[attr-defined]
    UpdateExpressionParser.make = classmethod(make)  # type: ignore[method-assign,assignment]
    validators.deepcopy = clone_tree
    validators.UpdateExpressionValidator.__init__ = remembering_init  # type: ignore[method-assign]
    validators.UpdateExpressionValidator.validate = validate_once  # type: ignore[method-assign]
    DepthFirstTraverser.nodes_to_be_processed = nodes_to_be_processed  # type: ignore[method-assign]
    DepthFirstTraverser.process = process  # type: ignore[method-assign]


def patch_moto_sqs_clock() -> None:
    """moto's SQS asks for the time once per message on every receive and count (through
    `datetime.now(UTC)` and an import each time), so a backlog of a few thousand messages
    made each ReceiveMessage cost milliseconds. The same clock, read from time.time()."""
    from moto.core import utils
    from moto.sqs import models

    if getattr(models.unix_time, "_localcloud", False):
        return

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else utils.unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else utils.unix_time_millis(dt)

    unix_time._localcloud = True  # type: ignore[attr-defined]
    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis


def patch_moto_sqs_scale() -> None:
    """moto's SQS cost grew with the backlog: each attribute a GetQueueAttributes names, and
    each message a ReceiveMessage returns (its retention check), recomputed every attribute of
    the queue, three walks of all its messages each; DeleteMessage walked the queue twice and
    rebuilt it outside the queue's lock (a message sent meanwhile could be lost). The same
    answers: each attribute asked computed once per call, the retention period read directly,
    a delete in one pass under the lock. `Queue.attributes` (which every SendMessage read for
    one FIFO attribute, ≈9% of the serve process's CPU through make dev) computes each value
    when it is read. A received message is copied shallowly: moto copies each one it returns only to
    replace its attributes with the ones asked for, and a deep copy was ≈5% of that CPU."""
    import copy
    import json

    from moto.core import utils
    from moto.sqs import models
    from moto.sqs.exceptions import InvalidAttributeName, ReceiptHandleIsInvalid

    backend_cls, queue_cls = models.SQSBackend, models.Queue
    if getattr(backend_cls.get_queue_attributes, "_localcloud", False):
        return

    class QueueAttributes(Mapping[str, Any]):
        """moto's `Queue.attributes` dict (same names, order and values), each value computed
        on reading it: the message counts walk the whole queue."""

        def __init__(self, queue: Any) -> None:
            self._queue = queue
            names = list(queue.BASE_ATTRIBUTES)
            if queue.fifo_queue:
                names += queue.FIFO_ATTRIBUTES
            if queue.kms_master_key_id:
                names += queue.KMS_ATTRIBUTES
            self._names = dict.fromkeys(names)

        def __getitem__(self, name: str) -> Any:
            if name not in self._names:
                raise KeyError(name)
            value = getattr(self._queue, utils.camelcase_to_underscores(name))
            if name == "RedrivePolicy" and value:
                return json.dumps(value)
            return str(value).lower() if isinstance(value, bool) else value

        def __iter__(self) -> Iterator[str]:
            return iter(self._names)

        def __len__(self) -> int:
            return len(self._names)

    def get_queue_attributes(self: Any, queue_name: str, attribute_names: list[str]) -> Any:
        queue = self.get_queue(queue_name)
        if not attribute_names:
            return {}
        valid = {"All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES}
        invalid = next((name for name in attribute_names if name not in valid), None)
        if invalid is not None:
            raise InvalidAttributeName(invalid)
        attributes = queue.attributes
        if "All" in attribute_names:
            return dict(attributes)
        asked = {name: attributes.get(name) for name in attribute_names}  # each computed once
        return {name: value for name, value in asked.items() if value is not None}

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention = self.get_queue(queue_name).message_retention_period
        return bool(retention + message.sent_timestamp / 1000 > time.time())

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # already deleted: SQS accepts it again
        with self._messages_lock:
            kept, deleted = [], []
            for message in self._messages:
                if receipt_handle == message.receipt_handle or (
                    receipt_handle in message._old_receipt_handles
                ):
                    deleted.append(message)
                else:
                    kept.append(message)
            if not deleted:
                raise ReceiptHandleIsInvalid()
            for message in deleted:
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)
            self._messages = kept

    get_queue_attributes._localcloud = True  # type: ignore[attr-defined]
    backend_cls.get_queue_attributes = get_queue_attributes  # type: ignore[method-assign]
    backend_cls.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )
    queue_cls.delete_message = delete_message  # type: ignore[method-assign]
    queue_cls.attributes = property(QueueAttributes)  # type: ignore[assignment]

    def copied(value: Any) -> Any:
        # models.py's `deepcopy`: its receive copies each message (then replaces, not edits,
        # the copy's message_attributes); queue state and templates are still copied deeply
        return copy.copy(value) if isinstance(value, models.Message) else copy.deepcopy(value)

    models.deepcopy = copied


def patch_moto_response_overhead() -> None:
    """Two pure helpers moto runs on every request recomputed the same answers each time:
    `camelcase_to_underscores` (per action, per SQS attribute, per serialized field; a fifth of
    a small call's server time) and `method_names_from_class` (`inspect.getmembers` of the
    response class, per request). Both are memoized."""
    import functools
    import sys

    from moto.core import utils

    if getattr(utils.camelcase_to_underscores, "_localcloud", False):
        return
    replacements = {
        "camelcase_to_underscores": functools.lru_cache(maxsize=8192)(
            utils.camelcase_to_underscores
        ),
        "method_names_from_class": functools.lru_cache(maxsize=1024)(utils.method_names_from_class),
    }
    for fn in replacements.values():
        fn._localcloud = True  # type: ignore[attr-defined]
    originals = {name: getattr(utils, name) for name in replacements}
    # Modules that imported the helpers by name hold their own reference.
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "moto" or module_name.startswith("moto.")):
            continue
        for name, replacement in replacements.items():
            if getattr(module, name, None) is originals[name]:
                setattr(module, name, replacement)


def _letters(alphabet: str) -> bytes:
    """A `bytes.translate` table mapping every byte onto `alphabet` (as evenly as 256 allows)."""
    return bytes(ord(alphabet[b % len(alphabet)]) for b in range(256))


_LOWERCASE = _letters(string.ascii_lowercase)
_ALPHANUMERIC = _letters(string.ascii_letters + string.digits)


def patch_moto_random_ids() -> None:
    """moto draws a received message's receipt handle (185 lowercase letters) and every
    response's request id (52 letters and digits) one `random.choice` per character: 70 and
    27 µs, ≈4% of the serve process's CPU through make dev with Postgres. The same shapes from
    `os.urandom`, 1.5 µs each."""
    from moto.core import responses
    from moto.sqs import models

    if getattr(models.generate_receipt_handle, "_localcloud", False):
        return

    def generate_receipt_handle() -> str:
        return os.urandom(185).translate(_LOWERCASE).decode()

    def gen_amzn_requestid_long(headerdict: dict[str, Any] | None = None) -> str:
        request_id = os.urandom(52).translate(_ALPHANUMERIC).decode()
        if isinstance(headerdict, dict):
            headerdict["x-amzn-requestid"] = request_id
        return request_id

    generate_receipt_handle._localcloud = True  # type: ignore[attr-defined]
    models.generate_receipt_handle = generate_receipt_handle
    responses.gen_amzn_requestid_long = gen_amzn_requestid_long


_ATTRIBUTE_VALUE_KEYS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


def patch_moto_attribute_value_serializer() -> None:
    """moto serializes a DynamoDB response by walking the service model: each attribute value
    of each item is an `AttributeValue` structure of ten members, and each member is looked up
    under all its aliases (`S`, `s`, ...), so an item of six attributes costs some sixty
    lookups; a GetItem spent a third of its time there. moto's items are already in the wire
    shape (`{"S": "x"}`), so a plain dict of those keys is written as moto would write it:
    strings as strings, blobs base64-encoded, maps and lists member by member; anything else
    goes the model's way."""
    from moto.core.serialize import BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure
    if getattr(original, "_localcloud", False):
        return

    def wire(serializer: Any, value: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for key, member in value.items():
            if member is None:
                continue
            if key == "S" or key == "N":
                out[key] = str(member) if member not in (None, {}, []) else member
            elif key == "B":
                out[key] = serializer._base64(member)
            elif key == "SS" or key == "NS":
                out[key] = [str(m) if m not in (None, {}, []) else m for m in member]
            elif key == "BS":
                out[key] = [serializer._base64(m) for m in member]
            elif key == "M":
                mapped: dict[str, Any] = {}
                for name, nested in member.items():
                    if nested is None:
                        continue
                    if type(nested) is not dict:
                        return None
                    converted = wire(serializer, nested)
                    if converted is None:
                        return None
                    mapped[name] = converted
                out[key] = mapped
            elif key == "L":
                listed: list[Any] = []
                for nested in member:
                    if nested is None:
                        listed.append(None)  # as moto's list serializer keeps it
                        continue
                    if type(nested) is not dict:
                        return None
                    converted = wire(serializer, nested)
                    if converted is None:
                        return None
                    listed.append(converted)
                out[key] = listed
            elif key in _ATTRIBUTE_VALUE_KEYS:  # NULL, BOOL
                out[key] = member
            else:
                return None
        return out

    def serialize_type_structure(
        self: Any, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if (
            key
            and shape.name == "AttributeValue"
            and type(value) is dict
            and self.service_model.service_name == "dynamodb"
        ):
            converted = wire(self, value)
            if converted is not None:
                self._default_serialize(serialized, converted, shape, key)
                return
        original(self, serialized, value, shape, key)

    serialize_type_structure._localcloud = True  # type: ignore[attr-defined]
    serialize_type_structure._original = original  # type: ignore[attr-defined]
    BaseJSONSerializer._serialize_type_structure = serialize_type_structure  # type: ignore[method-assign]


def patch_moto_attribute_value_parser() -> None:
    """The request side of the same walk: moto parses a DynamoDB request against the model,
    trying all ten `AttributeValue` members of every attribute value. A value of one known
    member is parsed as moto's parser parses it (strings and booleans as they are, blobs
    base64-decoded, maps and lists member by member); anything else goes the model's way."""
    from moto.core.parse import BaseJSONParser

    original = BaseJSONParser._parse_structure
    if getattr(original, "_localcloud", False):
        return
    missing = object()

    def parsed(parser: Any, value: Any) -> Any:
        if type(value) is not dict or len(value) != 1:
            return missing
        ((key, member),) = value.items()
        if member is None:
            return missing
        if key in ("S", "N", "NULL", "BOOL"):
            return {key: member}
        if key == "B":
            return {key: parser._blob_parser(member)}
        if key in ("SS", "NS"):
            return {key: list(member)} if type(member) is list else missing
        if key == "BS":
            return {key: [parser._blob_parser(m) for m in member]}
        if key == "M":
            if type(member) is not dict:
                return missing
            mapped = {}
            for name, nested in member.items():
                one = parsed(parser, nested)
                if one is missing:
                    return missing
                mapped[name] = one
            return {key: mapped}
        if key == "L":
            if type(member) is not list:
                return missing
            listed = []
            for nested in member:
                one = parsed(parser, nested)
                if one is missing:
                    return missing
                listed.append(one)
            return {key: listed}
        return missing

    def parse_structure(self: Any, shape: Any, value: Any) -> Any:
        if shape.name == "AttributeValue" and self.operation_model.service_model.service_name == (
            "dynamodb"
        ):
            fast = parsed(self, value)
            if fast is not missing:
                return fast
        return original(self, shape, value)

    parse_structure._localcloud = True  # type: ignore[attr-defined]
    parse_structure._original = original  # type: ignore[attr-defined]
    BaseJSONParser._parse_structure = parse_structure  # type: ignore[method-assign]


def patch_moto_server_dispatch() -> None:
    """moto's server resolves the backend of every request by listing its ~150 service
    modules and matching URL patterns (a tenth of a small request's time); the answer for a
    host never changes, so it is remembered."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if getattr(DomainDispatcherApplication.get_backend_for_host, "_localcloud", False):
        return
    original = DomainDispatcherApplication.get_backend_for_host
    backends: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in backends:
            backends[host] = original(self, host)
        return backends[host]

    get_backend_for_host._localcloud = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]


def patch_moto_set_sizes() -> None:
    """moto checks the 400 KB item limit on every attribute it sets by sizing the whole item,
    and sizes a set by wrapping each member in a `DynamoType` of its own: every `UpdateItem`
    of a user's profile (three per memory, in its transactions) cost in proportion to the
    profile's tag vocabulary, a string set that grows with the user's tags. A set is sized
    as moto sizes its members (bytes of each string or binary, characters of each number),
    without the wrappers."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import bytesize

    original = DynamoType.size
    if getattr(original, "_localcloud", False):
        return

    def size(self: Any) -> int:
        if self.type in ("SS", "BS"):
            return sum(bytesize(member) for member in self.value)
        if self.type == "NS":
            return sum(len(str(member)) for member in self.value)
        return original(self)

    size._localcloud = True  # type: ignore[attr-defined]
    DynamoType.size = size  # type: ignore[method-assign]


def patch_moto_dynamodb_scale() -> None:
    """The DynamoDB scale fixes: transactions, queries, scans, expressions (idempotent)."""
    patch_moto_set_sizes()
    patch_moto_dynamodb_transactions()
    patch_moto_dynamodb_queries()
    patch_moto_dynamodb_scans()
    patch_moto_dynamodb_expressions()
    patch_moto_attribute_value_serializer()
    patch_moto_attribute_value_parser()
