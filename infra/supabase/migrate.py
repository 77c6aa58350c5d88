"""Applies infra/supabase/migrations/*.sql in order, each once, recording them where the
Supabase CLI does (`supabase_migrations.schema_migrations`), so a database migrated here and
one migrated by `supabase db push` agree on what has been applied.

    python -m infra.supabase.migrate postgresql://...
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg

from infra.supabase import MIGRATIONS

_LEDGER = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text primary key,
  statements text[],
  name text
);
"""


def migration_files(directory: Path = MIGRATIONS) -> list[Path]:
    return sorted(directory.glob("*_*.sql"))


async def apply_migrations(dsn: str, directory: Path = MIGRATIONS) -> list[str]:
    """Applies the migrations not yet recorded, each in its own transaction (under an
    advisory lock, so two runners at once apply each file once); returns their versions."""
    conn = await asyncpg.connect(dsn, statement_cache_size=0)
    applied: list[str] = []
    try:
        await conn.execute("select pg_advisory_lock(hashtext('memlayer-migrations'))")
        await conn.execute(_LEDGER)
        done = {
            row["version"]
            for row in await conn.fetch("select version from supabase_migrations.schema_migrations")
        }
        for path in migration_files(directory):
            version, _, name = path.stem.partition("_")
            if version in done:
                continue
            sql = path.read_text()
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, statements, name)"
                    " values ($1, $2, $3)",
                    version,
                    [sql],
                    name,
                )
            applied.append(version)
    finally:
        await conn.close()
    return applied


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m infra.supabase.migrate <database url>", file=sys.stderr)
        return 2
    for version in asyncio.run(apply_migrations(argv[0])):
        print(f"applied {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
