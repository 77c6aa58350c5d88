-- A search is one call (storage/postgres.py `PostgresSearch.search`; bench/postgres.py, README
-- "Postgres search"): `memlayer.search` runs both legs (`memlayer.search_legs`), fuses them as
-- search/fusion.py `combine` does and returns the hits with their records.
--
-- Profiled at 10k memories, a search was four statements: the lexemes, count and ef_search;
-- the legs; the hits' records, each parsed twice and planned once (asyncpg without a statement
-- cache prepares, then parses again with bind), eleven socket writes and eight round trips with
-- `begin` and `commit`, 200 candidate rows decoded and fused in Python. Now: `begin`, one call,
-- `commit`. The prelude's statements are plpgsql's, planned once per session; the legs stay a
-- statement composed for the query and planned with its lexemes as constants (EXECUTE ...
-- USING plans with the values), because which plan is right (GIN bitmap or newest-first scan,
-- HNSW or an exact scan) depends on them.
--
-- Both run as the caller (security invoker): the legs read memlayer.search_memories, the
-- records come through row-level security on memlayer.memories.

-- The two best-first lists: rows (leg 'k' or 's', nth, score, coverage, id, occurred_at,
-- dedupe_key) best first per leg. Keyword leg: candidates are the newest `p_keyword_cap`
-- memories holding every lexeme of `p_query` (GIN), and only when fewer than `p_depth` hold
-- them all, as many more holding some; ranked by ts_rank (weighted term frequency,
-- length-normalized: BM25's stand-in), so the work is bounded however many memories share a
-- common word; coverage is the share of the query's lexemes a memory holds. Semantic leg
-- (`p_vector` set): cosine distance on the halfvec column, through the HNSW index for a user
-- with at least `p_exact_below` memories holding at least `p_hnsw_min_share` of the table,
-- else an exact scan of the user's rows. The HNSW scan's first pass (ef_search, at least
-- `p_ef_search`) is sized so that about `p_depth` of its candidates are this user's: a second
-- pass of the iterative scan costs as much again. Filters: each argument not null.
create function memlayer.search_legs(
  p_user text, p_query text, p_vector real[], p_space text,
  p_kinds text[], p_tags text[], p_provider text, p_since timestamptz, p_until timestamptz,
  p_depth integer, p_keyword_cap integer, p_exact_below integer, p_hnsw_min_share float8,
  p_ef_search integer
) returns table (
  leg text, nth bigint, score float8, coverage float8, id text, occurred_at timestamptz,
  dedupe_key text
) language plpgsql security invoker rows 200 as $$
#variable_conflict use_column
declare
  v_memories integer;
  v_rows real; -- reltuples: -1 before the first analyze
  v_terms text[];
  v_where text := 'user_id = $1';
  v_newest text;
  v_pool text;
  v_ctes text[] := '{}';
  v_selects text[] := '{}';
  v_dims integer;
  v_distance text;
begin
  select coalesce((select p.memories from memlayer.profiles p where p.user_id = p_user), 0),
    (select c.reltuples from pg_catalog.pg_class c where c.oid = 'memlayer.memories'::regclass)
    into v_memories, v_rows;
  perform set_config('hnsw.ef_search', least(1000, greatest(p_ef_search,
    ceil(p_depth * 1.1 * greatest(v_rows, v_memories, 1) / greatest(v_memories, 1))))::text, true);
  -- each lexeme as tsquery input, taken verbatim (quoted, its quotes and backslashes escaped)
  v_terms := array(
    select '''' || replace(replace(t.lexeme, E'\\', E'\\\\'), '''', '''''') || ''''
    from unnest(to_tsvector('english', p_query)) t
  );
  if p_kinds is not null then v_where := v_where || ' and kind = any($9)'; end if;
  if p_tags is not null then v_where := v_where || ' and search_tags && $10'; end if;
  if p_provider is not null then v_where := v_where || ' and provider = $11'; end if;
  if p_since is not null then v_where := v_where || ' and occurred_at >= $12'; end if;
  if p_until is not null then v_where := v_where || ' and occurred_at < $13'; end if;

  if cardinality(v_terms) > 0 then
    v_newest := 'select id, occurred_at, dedupe_key, search_doc from memlayer.search_memories'
      || ' where ' || v_where || ' and %s order by id desc limit $4';
    v_ctes := v_ctes || ('kw_every as materialized (' || format(v_newest, 'search_doc @@ $2') || ')');
    v_pool := 'select id, occurred_at, dedupe_key, search_doc from kw_every';
    if cardinality(v_terms) > 1 then
      v_ctes := v_ctes || ('kw_some as (' || format(v_newest,
        'search_doc @@ $3 and not search_doc @@ $2 and (select count(*) from kw_every) < $5') || ')');
      v_pool := v_pool || ' union all select id, occurred_at, dedupe_key, search_doc from kw_some';
    end if;
    v_ctes := v_ctes || ('keyword as (select id, occurred_at, dedupe_key, search_doc, rank,'
      || ' row_number() over (order by rank desc, id) as nth from ('
      || 'select id, occurred_at, dedupe_key, search_doc, ts_rank(search_doc, $3, 1) as rank'
      || ' from (' || v_pool || ') pool order by rank desc, id limit $5) best)');
    v_selects := v_selects || ('select ''k'' as leg, nth, rank::float8 as score,'
      || ' (select count(*) from unnest($6) t where search_doc @@ t)::float8 / '
      || cardinality(v_terms) || ' as coverage, id, occurred_at, dedupe_key from keyword');
  end if;
  if p_vector is not null then
    v_dims := cardinality(p_vector);
    if v_memories >= p_exact_below
      and v_memories::float8 / greatest(v_rows::float8, v_memories, 1) >= p_hnsw_min_share
      and v_dims = any(array[384, 512, 768, 1024, 1536]) -- the sizes with an HNSW index
    then
      v_distance := format('embedding::halfvec(%s) <=> $7::halfvec(%s)', v_dims, v_dims);
    else -- not the index's expression: the planner scans the user's rows exactly
      v_distance := 'embedding <=> $7';
    end if;
    v_ctes := v_ctes || ('semantic as (select id, occurred_at, dedupe_key, distance,'
      || ' row_number() over (order by distance, id) as nth from ('
      || 'select id, occurred_at, dedupe_key, ' || v_distance || ' as distance'
      || ' from memlayer.search_memories where ' || v_where || ' and embedding_dims = ' || v_dims
      || ' and embedding_space = $8 order by distance limit $5) nearest)');
    v_selects := v_selects || ('select ''s'' as leg, nth, 1 - distance as score,'
      || ' null::float8 as coverage, id, occurred_at, dedupe_key from semantic');
  end if;
  if cardinality(v_selects) = 0 then
    return;
  end if;
  return query execute 'with ' || array_to_string(v_ctes, ', ') || ' '
      || array_to_string(v_selects, ' union all ') || ' order by leg, nth'
    using p_user,
      -- (no lexemes: no tsquery, which would say so in a notice)
      case when cardinality(v_terms) > 0 then array_to_string(v_terms, ' & ')::tsquery end,
      case when cardinality(v_terms) > 0 then array_to_string(v_terms, ' | ')::tsquery end,
      p_keyword_cap, p_depth, v_terms::tsquery[], p_vector::halfvec, p_space,
      p_kinds, p_tags, p_provider, p_since, p_until;
end
$$;

-- The hits, best first, with their records: the legs fused exactly as search/fusion.py
-- `combine` fuses them (its constants are the arguments; tests/postgres/test_search_fusion.py
-- compares the two). keyword mode: score = rank score / the best. semantic: max(cosine, 0).
-- hybrid: RRF of both lists (a keyword hit weighted by its coverage, the semantic list by
-- `p_semantic_weight`; equal scores share a rank) with the recency boost, scaled so the best
-- possible score is 1. Then `p_min_similarity` (a memory matching none of the words needs
-- that cosine) and near-duplicate collapse (the best of each dedupe key).
create function memlayer.search(
  p_user text, p_query text, p_vector real[], p_space text,
  p_kinds text[], p_tags text[], p_provider text, p_since timestamptz, p_until timestamptz,
  p_depth integer, p_keyword_cap integer, p_exact_below integer, p_hnsw_min_share float8,
  p_ef_search integer,
  p_mode text, p_limit integer, p_semantic_weight float8, p_min_similarity float8,
  p_rrf_k integer, p_recency_weight float8, p_recency_half_life_days float8, p_now float8
) returns table (
  id text, score float8, semantic_rank bigint, keyword_rank bigint, similarity float8,
  record text
) language plpgsql security invoker rows 10 as $$
#variable_conflict use_column
begin
  return query
  with legs as materialized (
    select l.*, rank() over (partition by l.leg order by l.score desc) as leg_rank
    from memlayer.search_legs(p_user, p_query, p_vector, p_space, p_kinds, p_tags, p_provider,
      p_since, p_until, p_depth, p_keyword_cap, p_exact_below, p_hnsw_min_share, p_ef_search) l
  ), lists as (
    select max(l.score) filter (where l.leg = 'k' and l.nth = 1) as top,
      coalesce(bool_or(l.leg = 'k'), false)::integer::float8
        + case when coalesce(bool_or(l.leg = 's'), false)
          then greatest(0::float8, p_semantic_weight) else 0::float8 end as list_weight
    from legs l
  ), candidates as (
    select l.id, min(l.occurred_at) as occurred_at, min(l.dedupe_key) as dedupe_key,
      min(l.leg_rank) filter (where l.leg = 's') as semantic_rank,
      min(l.leg_rank) filter (where l.leg = 'k') as keyword_rank,
      min(l.nth) filter (where l.leg = 's') as semantic_nth,
      min(l.nth) filter (where l.leg = 'k') as keyword_nth,
      min(l.score) filter (where l.leg = 's') as similarity,
      min(l.score) filter (where l.leg = 'k') as keyword_score,
      min(l.coverage) filter (where l.leg = 'k') as coverage
    from legs l group by l.id
  ), scored as (
    select c.*, case p_mode
      when 'keyword' then c.keyword_score / s.top
      when 'semantic' then greatest(0::float8, least(1::float8, c.similarity))
      else (coalesce(greatest(0::float8, p_semantic_weight) / (p_rrf_k + c.semantic_rank), 0)
          + coalesce(c.coverage / (p_rrf_k + c.keyword_rank), 0))
        * (1 + p_recency_weight * power(0.5::float8,
          greatest(0::float8, p_now - extract(epoch from c.occurred_at)::float8) / 86400
          / p_recency_half_life_days))
        / (s.list_weight / (p_rrf_k + 1) * (1 + p_recency_weight))
      end as fused
    from candidates c cross join lists s
    where (p_mode = 'keyword' and c.keyword_rank is not null)
      or (p_mode = 'semantic' and c.semantic_rank is not null)
      or (p_mode not in ('keyword', 'semantic') and s.list_weight > 0)
  ), kept as (
    select c.*, row_number() over (order by
        case p_mode when 'keyword' then c.keyword_nth when 'semantic' then c.semantic_nth end,
        c.fused desc, c.id collate "C") as position
    from scored c
    where p_min_similarity is null or c.keyword_rank is not null
      or coalesce(c.similarity, -1) >= p_min_similarity
  ), best as (
    select k.* from (
      select k.*, row_number() over (partition by k.dedupe_key order by k.position) as copy
      from kept k
    ) k
    where k.dedupe_key is null or k.copy = 1
    order by k.position limit p_limit
  )
  select b.id, b.fused, b.semantic_rank, b.keyword_rank, b.similarity, m.record::text
  from best b join memlayer.memories m on m.user_id = p_user and m.id = b.id
  order by b.position;
end
$$;

revoke execute on function memlayer.search_legs from public;
revoke execute on function memlayer.search from public;
grant execute on function memlayer.search_legs to authenticated;
grant execute on function memlayer.search to authenticated;
