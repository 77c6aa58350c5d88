-- The embed stage writes a memory's vector with its `ready` save, one row version instead of
-- two. It wrote the vectors of a batch first (`put_vectors`: an UPDATE per memory, each a new
-- row version with its GIN entries and an HNSW insertion) and then saved each memory `ready`
-- (another new version: GIN entries and an HNSW insertion again, the vector unchanged), and a
-- memory deleted in between had its vector taken back out. Now `memlayer.save_memory` takes
-- the vector too; the version check that guards the save guards the vector.
--
-- p: as in 20261202143000, plus vector: {embedding (pgvector's text form), dims, space, hash}
-- or null. The vector must be of the memory's content (the caller checks: `check_own_vector`).
create or replace function memlayer.save_memory(p jsonb) returns void
language plpgsql security invoker as $$
declare
  m memlayer.memories := jsonb_populate_record(null::memlayer.memories, p -> 'memory');
  v_max_bytes bigint := (p ->> 'max_bytes')::bigint;
  v_vector jsonb := case when jsonb_typeof(p -> 'vector') = 'object' then p -> 'vector' end;
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
      case when v_vector is not null then (v_vector ->> 'embedding')::halfvec
        when v_stale then null else t.embedding end,
      case when v_vector is not null then (v_vector ->> 'dims')::integer
        when v_stale then null else t.embedding_dims end,
      case when v_vector is not null then v_vector ->> 'space'
        when v_stale then null else t.embedding_space end,
      case when v_vector is not null then v_vector ->> 'hash'
        when v_stale then null else t.embedding_hash end)
  where t.user_id = m.user_id and t.id = m.id;
  if jsonb_typeof(p -> 'job') = 'object' then
    perform memlayer.put_job(p -> 'job');
  end if;
end
$$;
