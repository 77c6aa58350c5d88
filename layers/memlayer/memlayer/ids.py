"""Ids are ULIDs: opaque strings that sort by creation time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ulid import ULID

_ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def new_id() -> str:
    return str(ULID())


def is_id(value: str) -> bool:
    return bool(_ULID_RE.match(value))


def id_floor(moment: datetime) -> str:
    """The smallest id that can have been created at `moment` (for time-range key bounds)."""
    return str(ULID.from_timestamp(moment.timestamp()))[:10] + "0" * 16


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
