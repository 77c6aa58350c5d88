"""The keyword analyzer and Postgres agree on stems: `memlayer.text.stem` is Snowball English,
like the `english` configuration that `search_doc` and the keyword query use, so the terms
highlighted in a Postgres hit are the lexemes Postgres matched. Postgres bundles an older
Snowball release; the words Snowball 3 stems differently are pinned here, so any other drift
(a Postgres or PyStemmer upgrade) shows."""

from __future__ import annotations

import asyncio

import asyncpg

from memlayer.text import STOPWORDS, stem, tokenize

WORDS = [
    "running",
    "runs",
    "studies",
    "studying",
    "studied",
    "notes",
    "noted",
    "connection",
    "connected",
    "connecting",
    "organization",
    "generalization",
    "happiness",
    "quickly",
    "caches",
    "libraries",
    "movies",
    "deployments",
    "kubernetes",
    "databases",
    "indexing",
    "searched",
    "relational",
    "argued",
    "arguing",
    "universal",
    "university",
    "recipes",
    "baking",
    "flights",
    "itinerary",
    "embeddings",
    "vectors",
    "retrieval",
    "ponies",
    "agreed",
    "feed",
]


async def _lexemes(url: str, words: list[str]) -> dict[str, list[str]]:
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        rows = await conn.fetch(
            "select w, array(select lexeme from unnest(to_tsvector('english', w))) as lexemes"
            " from unnest($1::text[]) w",
            words,
        )
    finally:
        await conn.close()
    return {row["w"]: list(row["lexemes"]) for row in rows}


# Snowball 3 no longer strips these suffixes; Postgres 18's Snowball 2 does.
SNOWBALL_3_CHANGES = {
    "organization": ("organiz", "organ"),
    "universal": ("universal", "univers"),
    "university": ("universiti", "univers"),
}


def test_stems_are_the_lexemes_postgres_indexes(postgres_url: str) -> None:
    assert not set(WORDS) & STOPWORDS
    lexemes = asyncio.run(_lexemes(postgres_url, WORDS))
    expected = {
        word: [SNOWBALL_3_CHANGES[word][1] if word in SNOWBALL_3_CHANGES else stem(word)]
        for word in WORDS
    }
    assert lexemes == expected
    assert {word: stem(word) for word in SNOWBALL_3_CHANGES} == {
        word: ours for word, (ours, _) in SNOWBALL_3_CHANGES.items()
    }
    sentence = "Studying relational databases and indexing the searched vectors"
    postgres = asyncio.run(_lexemes(postgres_url, [sentence]))[sentence]
    assert sorted(set(tokenize(sentence))) == sorted(postgres)
