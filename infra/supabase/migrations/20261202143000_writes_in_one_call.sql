-- A memory's create and a pipeline stage's save are one call each (storage/postgres.py
-- `PostgresStore.create_memory`, `save_memory`; README "On Postgres"): the client sends
-- `begin`, the caller's claims, the call and `commit` in one simple-protocol message (one round
-- trip), its one argument a JSON document.
--
-- Profiled through `make dev` (pg_stat_statements, 8 clients creating for one user), a create
-- was five statements and a save four, each parsed and planned on every call (asyncpg without
-- a statement cache), ten round trips each with `begin` and `commit`; and every one of them
-- waited on the user's hot rows: the day counter and the profile, whose updates hold their row
-- lock until commit, so a transaction's remaining round trips (in a busy client process,
-- milliseconds each) were spent with the lock held. The day counter's upsert averaged 104 ms
-- and the profile's 37 ms, nearly all of it waiting. Now the statements are plpgsql's
-- (planned once per session), the hot rows are written last, the lock is held only while the
-- server itself finishes the call and commits, and a save whose size did not change (every
-- pipeline stage of a memory that is not a fetched share) does not touch the profile at all.
--
-- Outcomes other than done are raised with memlayer's own SQLSTATEs, the details in DETAIL:
--   MLVC0 version conflict (another record under the id; a save whose version moved on)
--   MLLR0 limit reached, DETAIL the limit: daily_writes, max_memories or max_bytes
--   MLIR0 idempotency key already used, DETAIL {"body_hash", "response"} of its first use
-- Both run as the caller (security invoker): row-level security applies as it did.

-- p_job: {user_id, id, record, expires_at}. Inserts or replaces the job (PostgresStore.put_job
-- calls it too).
create function memlayer.put_job(p_job jsonb) returns void
language plpgsql security invoker as $$
begin
  insert into memlayer.jobs (user_id, id, record, expires_at)
  select j.user_id, j.id, j.record, j.expires_at
  from jsonb_populate_record(null::memlayer.jobs, p_job) j
  on conflict (user_id, id)
  do update set record = excluded.record, expires_at = excluded.expires_at;
end
$$;

-- p: {memory: the row's columns (record included), job: {user_id, id, record, expires_at} or
-- null, idempotency: {scope, key, body_hash, response, expires_at} or null, day,
-- day_expires_at, limits: {daily_writes, max_memories, max_bytes} (0: no limit)}. A row
-- holding this very record under the id already (an earlier attempt committed, its reply was
-- lost) is done: nothing is written or counted again.
create function memlayer.create_memory(p jsonb) returns void
language plpgsql security invoker as $$
declare
  m memlayer.memories := jsonb_populate_record(null::memlayer.memories, p -> 'memory');
  v_limits jsonb := p -> 'limits';
  v_daily integer := (v_limits ->> 'daily_writes')::integer;
  v_max_memories integer := (v_limits ->> 'max_memories')::integer;
  v_max_bytes bigint := (v_limits ->> 'max_bytes')::bigint;
  v_first memlayer.idempotency_keys;
  v_count integer;
begin
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

-- p: {memory: the row's columns at the new version, expected_version, max_bytes (0: none),
-- job: as for create_memory, or null}. Saves the memory if it is still at expected_version
-- (else MLVC0), its size change within max_bytes (else MLLR0), and its job. New content drops
-- the vector, which describes the content it was computed from.
create function memlayer.save_memory(p jsonb) returns void
language plpgsql security invoker as $$
declare
  m memlayer.memories := jsonb_populate_record(null::memlayer.memories, p -> 'memory');
  v_max_bytes bigint := (p ->> 'max_bytes')::bigint;
  v_size integer;
  v_hash text;
  v_grown integer;
  v_stale boolean;
begin
  select t.size_bytes, t.content_hash into v_size, v_hash from memlayer.memories t
  where t.user_id = m.user_id and t.id = m.id and t.version = (p ->> 'expected_version')::integer
  for update;
  if not found then
    raise exception using errcode = 'MLVC0', message = 'version conflict', detail = m.id;
  end if;
  v_grown := m.size_bytes - v_size;
  if v_grown <> 0 then
    update memlayer.profiles f set bytes = f.bytes + v_grown where f.user_id = m.user_id
      and (v_max_bytes = 0 or v_grown <= 0 or f.bytes + v_grown <= v_max_bytes);
    if not found then
      raise exception using errcode = 'MLLR0', message = 'limit reached', detail = 'max_bytes';
    end if;
  end if;
  v_stale := v_hash is distinct from m.content_hash;
  update memlayer.memories t set (kind, status, version, provider, tags, search_tags, title,
    content, content_hash, created_at, updated_at, size_bytes, job_id, dedupe_key, record,
    embedding, embedding_dims, embedding_space, embedding_hash)
    = (m.kind, m.status, m.version, m.provider, m.tags, m.search_tags, m.title, m.content,
      m.content_hash, m.created_at, m.updated_at, m.size_bytes, m.job_id, m.dedupe_key,
      m.record,
      case when v_stale then null else t.embedding end,
      case when v_stale then null else t.embedding_dims end,
      case when v_stale then null else t.embedding_space end,
      case when v_stale then null else t.embedding_hash end)
  where t.user_id = m.user_id and t.id = m.id;
  if jsonb_typeof(p -> 'job') = 'object' then
    perform memlayer.put_job(p -> 'job');
  end if;
end
$$;

revoke execute on function memlayer.put_job from public;
revoke execute on function memlayer.create_memory from public;
revoke execute on function memlayer.save_memory from public;
grant execute on function memlayer.put_job to authenticated, service_role;
grant execute on function memlayer.create_memory to authenticated, service_role;
grant execute on function memlayer.save_memory to authenticated, service_role;
