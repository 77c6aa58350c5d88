-- When a memory happened (`occurred_at` of its record, else when it was saved), as a column:
-- search's `since`/`until` compare it (docs/data-model.md, "Postgres").

-- A text-to-timestamptz cast is only stable (a string without an offset would read in the
-- session's time zone); the app always writes RFC 3339 with an offset, so here it is
-- immutable, which a generated column needs.
create function memlayer.record_moment(value text) returns timestamptz
  language sql immutable parallel safe
  as $$ select value::timestamptz $$;

alter table memlayer.memories add column occurred_at timestamptz generated always as (
  coalesce(memlayer.record_moment(record ->> 'occurred_at'), created_at)
) stored;
