-- A create no longer needs a read of its own first. The memories service read the user's
-- profile (an admin's limits for this user) in a transaction of its own before every create:
-- four round trips (begin, parse, execute, commit; asyncpg without a statement cache), as many
-- as the create itself costs in total. `memlayer.create_memory` now takes the product's
-- default limits and puts the user's own in their place (`defaults || profiles.limits`, as
-- `Limits.overridden` does in Python), and refuses a memory larger than the whole storage
-- limit itself (MLLR0, DETAIL memory_size), before it writes anything.
--
-- p: as in 20261202143000, `limits` now the defaults.
create or replace function memlayer.create_memory(p jsonb) returns void
language plpgsql security invoker as $$
declare
  m memlayer.memories := jsonb_populate_record(null::memlayer.memories, p -> 'memory');
  v_limits jsonb := (p -> 'limits') || coalesce(
    (select f.limits from memlayer.profiles f where f.user_id = m.user_id), '{}'::jsonb);
  v_daily integer := (v_limits ->> 'daily_writes')::integer;
  v_max_memories integer := (v_limits ->> 'max_memories')::integer;
  v_max_bytes bigint := (v_limits ->> 'max_bytes')::bigint;
  v_first memlayer.idempotency_keys;
  v_count integer;
begin
  if v_max_bytes > 0 and m.size_bytes > v_max_bytes then
    raise exception using errcode = 'MLLR0', message = 'limit reached', detail = 'memory_size';
  end if;
  insert into memlayer.memories (user_id, id, kind, status, version, provider, tags,
    search_tags, title, content, content_hash, created_at, updated_at, size_bytes, job_id,
    dedupe_key, record)
  values (m.user_id, m.id, m.kind, m.status, m.version, m.provider, m.tags, m.search_tags,
    m.title, m.content, m.content_hash, m.created_at, m.updated_at, m.size_bytes, m.job_id,
    m.dedupe_key, m.record)
  on conflict (user_id, id) do nothing;
  if not found then
    if exists (select 1 from memlayer.memories t
        where t.user_id = m.user_id and t.id = m.id and t.record = m.record) then
      return;
    end if;
    raise exception using errcode = 'MLVC0', message = 'version conflict', detail = m.id;
  end if;
  if jsonb_typeof(p -> 'idempotency') = 'object' then
    insert into memlayer.idempotency_keys (user_id, scope, key, body_hash, response, expires_at)
    select m.user_id, k.scope, k.key, k.body_hash, k.response, k.expires_at
    from jsonb_populate_record(null::memlayer.idempotency_keys, p -> 'idempotency') k
    on conflict do nothing;
    if not found then
      select * into v_first from memlayer.idempotency_keys k
      where k.user_id = m.user_id and k.scope = p -> 'idempotency' ->> 'scope'
        and k.key = p -> 'idempotency' ->> 'key';
      raise exception using errcode = 'MLIR0', message = 'idempotency key already used',
        detail = jsonb_build_object('body_hash', v_first.body_hash,
          'response', v_first.response)::text;
    end if;
  end if;
  if jsonb_typeof(p -> 'job') = 'object' then
    perform memlayer.put_job(p -> 'job');
  end if;
  -- The hot rows last: their locks are held from here to the commit.
  insert into memlayer.day_counters as d (user_id, day, writes, expires_at)
  values (m.user_id, (p ->> 'day')::date, 1, (p ->> 'day_expires_at')::timestamptz)
  on conflict (user_id, day) do update set writes = d.writes + 1
  where v_daily = 0 or d.writes < v_daily;
  if not found then
    raise exception using errcode = 'MLLR0', message = 'limit reached', detail = 'daily_writes';
  end if;
  insert into memlayer.profiles as f (user_id, memories, bytes)
  values (m.user_id, 1, m.size_bytes)
  on conflict (user_id) do update set memories = f.memories + 1, bytes = f.bytes + m.size_bytes
  where (v_max_memories = 0 or f.memories < v_max_memories)
    and (v_max_bytes = 0 or f.bytes + m.size_bytes <= v_max_bytes);
  if not found then
    select f.memories into v_count from memlayer.profiles f where f.user_id = m.user_id;
    raise exception using errcode = 'MLLR0', message = 'limit reached',
      detail = case when v_max_memories > 0 and v_count >= v_max_memories
        then 'max_memories' else 'max_bytes' end;
  end if;
end
$$;
