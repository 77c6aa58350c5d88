-- The conversation a memory is a turn of (`source.conversation_id` of its record), as a
-- column with an index in conversation order: search reads the turns around a hit
-- (docs/data-model.md, "Postgres").
alter table memlayer.memories add column conversation_id text generated always as (
  record -> 'source' ->> 'conversation_id'
) stored;
create index memories_conversation on memlayer.memories (user_id, conversation_id, occurred_at, id)
  where conversation_id is not null;
