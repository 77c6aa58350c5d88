from datetime import UTC, datetime

import pytest

from memlayer.search.timeexpr import resolve

NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)  # a Tuesday


def _day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "start", "end"),
    [
        ("what did I note yesterday", _day(2026, 11, 30), _day(2026, 12, 1)),
        ("notes from today", _day(2026, 12, 1), _day(2026, 12, 2)),
        ("the plan from last week", _day(2026, 11, 23), _day(2026, 11, 30)),
        ("this month's expenses", _day(2026, 12, 1), _day(2027, 1, 1)),
        ("last month", _day(2026, 11, 1), _day(2026, 12, 1)),
        ("last year", _day(2025, 1, 1), _day(2026, 1, 1)),
        ("what did I decide about the lease in March?", _day(2026, 3, 1), _day(2026, 4, 1)),
        ("in May 2023 we went hiking", _day(2023, 5, 1), _day(2023, 6, 1)),
        ("sept 2024 trip", _day(2024, 9, 1), _day(2024, 10, 1)),
        ("two years ago", _day(2024, 1, 1), _day(2025, 1, 1)),
        ("3 days ago", _day(2026, 11, 28), _day(2026, 11, 29)),
        ("a month ago", _day(2026, 11, 1), _day(2026, 12, 1)),
        ("on Monday", _day(2026, 11, 30), _day(2026, 12, 1)),
        ("last Tuesday", _day(2026, 11, 24), _day(2026, 11, 25)),
        ("during 2021", _day(2021, 1, 1), _day(2022, 1, 1)),
        ("the 2025-02-14 dinner", _day(2025, 2, 14), _day(2025, 2, 15)),
        ("report 2025-07", _day(2025, 7, 1), _day(2025, 8, 1)),
    ],
)
def test_expressions_resolve_to_their_period(query: str, start: datetime, end: datetime) -> None:
    period = resolve(query, NOW)
    assert period is not None, query
    assert (period.start, period.end) == (start, end)
    assert period.text.lower() in query.lower()


def test_past_n_units_run_until_now() -> None:
    period = resolve("anything in the past 10 days?", NOW)
    assert period is not None
    assert (period.start, period.end) == (_day(2026, 11, 21).replace(hour=15, minute=30), NOW)


def test_a_month_later_in_the_year_means_last_year() -> None:
    period = resolve("in December", datetime(2026, 2, 10, tzinfo=UTC))
    assert period is not None and period.start == _day(2025, 12, 1)


@pytest.mark.parametrize(
    "query",
    [
        "may I see my notes about postgres",
        "march forward with the migration",
        "port 6543 on the staging database",
        "the 2026-13-40 build",
        "",
    ],
)
def test_queries_without_a_time_resolve_to_nothing(query: str) -> None:
    assert resolve(query, NOW) is None


def test_the_first_expression_wins() -> None:
    period = resolve("yesterday I said something about last year", NOW)
    assert period is not None and period.text == "yesterday"


def test_month_arithmetic_clamps_to_the_last_day() -> None:
    period = resolve("a month ago", datetime(2026, 3, 31, tzinfo=UTC))
    assert period is not None and period.start == _day(2026, 2, 1)


def test_the_expression_is_stripped_from_the_query() -> None:
    period = resolve("What did I decide about the lease in March?", NOW)
    assert period is not None
    assert period.strip_from("What did I decide about the lease in March?") == (
        "What did I decide about the lease ?"
    )
