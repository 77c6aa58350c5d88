"""Tag normalisation and reuse of the user's existing tags."""

from __future__ import annotations

import pytest

from memlayer.ai.tags import TagIndex, normalize_tag, reconcile_tags
from memlayer.text import singular


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Machine Learning ", "machine-learning"),
        ("machine_learning", "machine-learning"),
        ("Hello, World!", "hello-world"),
        ("a -- b", "a-b"),
        ("C++", "c++"),
        ("C#", "c#"),
        ("Node.js", "node.js"),
        (".NET", ".net"),
        ("end.", "end"),
        ("!!!", ""),
        ("\uff26\uff55\uff4c\uff4c", "full"),  # fullwidth letters fold (NFKC)
        ("x" * 80, "x" * 64),
    ],
)
def test_normalize_tag(raw, expected):
    assert normalize_tag(raw) == expected


@pytest.mark.parametrize(
    ("plural", "expected"),
    [
        ("apis", "api"),
        ("libraries", "library"),
        ("boxes", "box"),
        ("news", "news"),
        ("analysis", "analysis"),
        ("status", "status"),
        ("css", "css"),
    ],
)
def test_singular(plural, expected):
    assert singular(plural) == expected


EXISTING = [
    "javascript",
    "api",
    "machine-learning",
    "python2",
    "nodejs",
    "movie",
    "cache",
    "design-pattern",
    "resting",
]


@pytest.mark.parametrize(
    ("proposed", "expected"),
    [
        ("JavaScript", "javascript"),  # case
        ("java-script", "javascript"),  # hyphen
        ("Java Script", "javascript"),  # space
        ("java_script", "javascript"),  # underscore
        ("javascipt", "javascript"),  # one typo in a long tag
        ("APIs", "api"),  # plural
        ("Machine Learning", "machine-learning"),
        ("machine-learnings", "machine-learning"),
        ("Node.js", "nodejs"),
        ("movies", "movie"),
        ("caches", "cache"),
        ("Design Patterns", "design-pattern"),
    ],
)
def test_reconcile_maps_near_duplicates_to_existing(proposed, expected):
    assert reconcile_tags([proposed], EXISTING) == [expected]


@pytest.mark.parametrize("proposed", ["python3", "testing", "java", "apex", "rust"])
def test_reconcile_keeps_distinct_tags(proposed):
    # Digits differ, first letter differs, or the tag is too short for typo matching.
    assert reconcile_tags([proposed], EXISTING) == [proposed]


def test_reconcile_dedupes_keeps_order_skips_empties_and_limits():
    proposed = ["Python", "python", "PYTHONS", "", "  ", "???", "Rust", "js", "Go"]
    assert reconcile_tags(proposed, []) == ["python", "rust", "js", "go"]
    assert reconcile_tags(proposed, [], limit=2) == ["python", "rust"]
    assert reconcile_tags(["JavaScript", "java-script", "react"], EXISTING) == [
        "javascript",
        "react",
    ]


def test_tag_index_reuse_and_lookup():
    index = TagIndex(["Data Science", "data-science", "API"])
    assert len(index) == 2
    assert index.match("data_sciences") == "data-science"
    assert index.match("unrelated") is None
    assert reconcile_tags(["apis", "new-tag"], index) == ["api", "new-tag"]
