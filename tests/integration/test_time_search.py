"""Search by when things happened: a query that names a time ranks that time's memories
first (occurred_at, not when they were saved)."""

from __future__ import annotations

from tests.conftest import User
from tests.integration.test_retrieval import add, search


def test_a_query_naming_a_month_ranks_that_months_memories_first(cloud: object, user: User) -> None:
    january = add(
        user,
        "Lease renewal notes: the lease costs more, the lease agent wants an answer",
        occurred_at="2026-01-15T18:00:00Z",
    )
    march = add(
        user,
        "After a long talk over dinner we chose not to renew the lease.",
        occurred_at="2026-03-10T18:00:00Z",
    )
    june = add(
        user, "Signed the new lease, the lease starts in July.", occurred_at="2026-06-20T18:00:00Z"
    )
    cloud.drain(timeout=30)  # type: ignore[attr-defined]

    plain = [i["memory"]["id"] for i in search(user, "the lease", mode="keyword")]
    assert set(plain) == {january, march, june} and plain[0] != march  # text alone: not March

    for mode in ("keyword", "hybrid"):
        timed = [i["memory"]["id"] for i in search(user, "the lease in March 2026", mode=mode)]
        assert timed[0] == march, mode
        assert set(timed) == {january, march, june}  # a boost, not a filter

    # an explicit range is a filter, on when it happened (all three were saved just now)
    march_range = {"since": "2026-03-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"}
    filtered = search(user, "the lease", mode="hybrid", filters=march_range)
    assert [i["memory"]["id"] for i in filtered] == [march]
