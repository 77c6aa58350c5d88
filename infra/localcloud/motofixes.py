"""Small fidelity fixes to moto's S3 event notifications (moto runs in this process).

moto 5 url-encodes the whole object key with `quote_plus`, so `uploads/a b.txt` arrives as
`uploads%2Fa+b.txt`; S3 keeps the slashes (`uploads/a+b.txt`). It also leaves out fields
real records carry (userIdentity, requestParameters, responseElements, sequencer). Handlers
written against the local cloud must also work on AWS, so the records are made S3-shaped.
"""

from __future__ import annotations

import logging
import secrets
import threading
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


_dynamodb_lock = threading.Lock()


def serialize_moto_dynamodb() -> None:
    """moto serves requests on many threads without locking, so parallel transactions can
    overshoot their conditions. Real DynamoDB applies each request atomically; serializing
    moto's DynamoDB handler gives the local cloud the same semantics (idempotent)."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_serialized", False):
        return
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with _dynamodb_lock:
            return original(self)

    call_action._serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
