"""Time expressions in a search query ("yesterday", "last week", "in May 2023", "two years
ago") resolved against a reference time into the period they name.

Search uses the period as a soft boost on when a memory happened (`occurred_at`), not as a
filter: people misremember dates, and a query that names a month should rank that month's
memories first without hiding the rest. An explicit `since`/`until` is the filter.

Calendar periods are in UTC; "in March" means the most recent March that has begun, "on
Tuesday" the most recent Tuesday before today. A bare month name counts only after "in",
"during" or "since" (or before a year), so "may" the verb and "march" the verb are not dates.
Only English is understood.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class TimePeriod:
    start: datetime  # inclusive
    end: datetime  # exclusive
    text: str  # the words of the query that named it

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end

    def strip_from(self, query: str) -> str:
        """The query without the words that named the period: they say when, not what, and
        as keywords they match every memory that mentions a month or says "last"."""
        return " ".join(query.replace(self.text, " ", 1).split())


_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS |= {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS["sept"] = 9
_WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "couple of": 2,
    "few": 3,
}
_UNITS = {"day": "day", "week": "week", "month": "month", "year": "year"}

_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_NUMBER_RE = r"\d{1,3}|" + "|".join(sorted(_NUMBERS, key=len, reverse=True))
_UNIT_RE = r"(day|week|month|year)s?"

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("iso", re.compile(r"\b(\d{4})-(\d{2})(?:-(\d{2}))?\b")),
    (
        "month_year",
        re.compile(rf"\b(?:in\s+|during\s+)?({_MONTH_RE})\.?,?\s+(?:of\s+)?(\d{{4}})\b", re.I),
    ),
    ("ago", re.compile(rf"\b({_NUMBER_RE})\s+{_UNIT_RE}\s+ago\b", re.I)),
    ("last_n", re.compile(rf"\b(?:last|past|previous)\s+({_NUMBER_RE})\s+{_UNIT_RE}\b", re.I)),
    ("relative", re.compile(rf"\b(last|this|past|previous)\s+{_UNIT_RE}\b", re.I)),
    ("day_word", re.compile(r"\b(today|tonight|this morning|yesterday)\b", re.I)),
    (
        "weekday",
        re.compile(r"\b(?:on\s+|last\s+)?(" + "|".join(_WEEKDAYS) + r")\b", re.I),
    ),
    ("month", re.compile(rf"\b(?:in|during|since)\s+({_MONTH_RE})\b", re.I)),
    ("year", re.compile(r"\b(?:in|during)\s+((?:19|20)\d{2})\b", re.I)),
]


def _day(when: datetime) -> datetime:
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def _add_months(start: datetime, months: int) -> datetime:
    index = start.year * 12 + start.month - 1 + months
    return _month_start(index // 12, index % 12 + 1)


def _unit_period(unit: str, when: datetime) -> tuple[datetime, datetime]:
    """The calendar day/week (Monday first)/month/year containing `when`."""
    if unit == "day":
        start = _day(when)
        return start, start + timedelta(days=1)
    if unit == "week":
        start = _day(when) - timedelta(days=when.weekday())
        return start, start + timedelta(days=7)
    if unit == "month":
        start = _month_start(when.year, when.month)
        return start, _add_months(start, 1)
    start = datetime(when.year, 1, 1, tzinfo=UTC)
    return start, datetime(when.year + 1, 1, 1, tzinfo=UTC)


def _shift(unit: str, when: datetime, count: int) -> datetime:
    """`when` moved back `count` units (months and years by the calendar)."""
    if unit == "day":
        return when - timedelta(days=count)
    if unit == "week":
        return when - timedelta(weeks=count)
    months = count if unit == "month" else 12 * count
    moved = _add_months(_month_start(when.year, when.month), -months)
    last_day = calendar.monthrange(moved.year, moved.month)[1]
    return when.replace(year=moved.year, month=moved.month, day=min(when.day, last_day))


def _number(text: str) -> int:
    text = " ".join(text.lower().split())
    return int(text) if text.isdigit() else _NUMBERS[text]


def _valid_year(year: int) -> bool:
    return 1900 <= year <= 2200


def _resolve(kind: str, m: re.Match[str], now: datetime) -> tuple[datetime, datetime] | None:
    if kind == "iso":
        year, month, day = int(m[1]), int(m[2]), m[3]
        if not _valid_year(year) or not 1 <= month <= 12:
            return None
        if day is None:
            start = _month_start(year, month)
            return start, _add_months(start, 1)
        if not 1 <= int(day) <= calendar.monthrange(year, month)[1]:
            return None
        start = datetime(year, month, int(day), tzinfo=UTC)
        return start, start + timedelta(days=1)
    if kind == "month_year":
        year = int(m[2])
        if not _valid_year(year):
            return None
        start = _month_start(year, _MONTHS[m[1].lower()])
        return start, _add_months(start, 1)
    if kind == "ago":
        unit = _UNITS[m[2].lower()]
        return _unit_period(unit, _shift(unit, now, _number(m[1])))
    if kind == "last_n":
        unit = _UNITS[m[2].lower()]
        return _shift(unit, now, _number(m[1])), now
    if kind == "relative":
        unit = _UNITS[m[2].lower()]
        if m[1].lower() == "this":
            return _unit_period(unit, now)
        if m[1].lower() == "past":
            return _shift(unit, now, 1), now
        return _unit_period(unit, _shift(unit, now, 1))
    if kind == "day_word":
        back = 1 if m[1].lower() == "yesterday" else 0
        return _unit_period("day", now - timedelta(days=back))
    if kind == "weekday":
        back = (now.weekday() - _WEEKDAYS[m[1].lower()]) % 7 or 7
        return _unit_period("day", now - timedelta(days=back))
    if kind == "month":
        month = _MONTHS[m[1].lower()]
        year = now.year if month <= now.month else now.year - 1
        start = _month_start(year, month)
        return start, _add_months(start, 1)
    year = int(m[1])
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def resolve(query: str, now: datetime | None = None) -> TimePeriod | None:
    """The period the first time expression in `query` names, relative to `now` (UTC;
    defaults to the current time), or None when the query names no time."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    best: tuple[int, TimePeriod] | None = None
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(query):
            period = _resolve(kind, m, now)
            if period is None:
                continue
            found = TimePeriod(period[0], period[1], m.group(0).strip())
            if best is None or m.start() < best[0]:
                best = (m.start(), found)
            break  # the earliest match of each kind is enough
    return best[1] if best else None
