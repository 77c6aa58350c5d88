"""memlayer's Postgres schema as Supabase CLI migrations (`supabase db push` applies them to
a project) and the small runner that applies the same files to any Postgres: the embedded one
of `make dev` and the tests."""

from __future__ import annotations

from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
