-- The search view (20261202000100_search_speed.sql) again, so that its `select *` takes the
-- columns added since (`occurred_at`, `conversation_id`): search's `since`/`until` compare
-- `occurred_at` through it. A view's `*` is expanded when the view is created.
create or replace view memlayer.search_memories with (security_invoker = false) as
  select * from memlayer.memories where user_id = (select auth.jwt() ->> 'sub');
