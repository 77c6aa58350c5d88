"""memlayer.text: the one stemmer, plural folding for names, and the one truncation."""

from __future__ import annotations

import pytest

from memlayer.models import stored_size, truncate_stored
from memlayer.text import (
    count_tokens,
    name_tokens,
    singular,
    stem,
    tokenize,
    truncate,
    utf8_size,
)


def test_snowball_stems_meet_where_the_light_stemmer_did_not():
    assert len(set(tokenize("connection connected connecting connects"))) == 1
    assert tokenize("happiness") == tokenize("happy") == [stem("happy")]
    assert tokenize("generalization") == tokenize("generalize")
    assert tokenize("ran") != tokenize("run")  # irregular forms stay apart


def test_names_keep_words_a_person_would_write():
    # a stem is no tag: "organization" must not become "organ" or "organiz"
    assert singular("organizations") == "organization"
    assert [singular(t) for t in name_tokens("Python APIs and C++ libraries")] == [
        "python",
        "api",
        "and",
        "c++",
        "library",
    ]


@pytest.mark.parametrize(
    "text", ["plain ascii text", "café déjà vu", "東京タワーの夜景", "emoji 🎉🚀 and 👩‍👩‍👧 family"]
)
def test_truncate_to_bytes_never_cuts_inside_a_character(text):
    size = utf8_size(text)
    for limit in range(size + 2):
        cut = truncate(text, limit)
        assert text.startswith(cut)
        assert utf8_size(cut) <= limit
        assert cut.encode("utf-8").decode("utf-8") == cut
        if len(cut) < len(text):  # the longest prefix: one more character would not fit
            assert utf8_size(text[: len(cut) + 1]) > limit
    assert truncate(text, size) == text


def test_truncate_by_other_measures():
    text = 'a "quoted"\nline ' * 20
    cut = truncate_stored(text, 50)
    assert stored_size(cut) <= 50 < stored_size(text[: len(cut) + 1])
    words = "word " * 5_000
    fitted = truncate(words, 100, count_tokens)
    assert words.startswith(fitted) and 90 <= count_tokens(fitted) <= 100
