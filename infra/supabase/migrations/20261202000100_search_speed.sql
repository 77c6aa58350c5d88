-- Search speed (bench/postgres.py, README "Benchmarks").
--
-- A memory's vector columns are all set from its current content or all null: the semantic
-- leg then needs no `embedding_hash = content_hash` filter (which the planner cannot
-- estimate, so it skipped the HNSW index). Vectors left from older content are dropped here;
-- the re-embed sweep recomputes those of ready memories.
update memlayer.memories
set embedding = null, embedding_dims = null, embedding_space = null, embedding_hash = null
where embedding is not null and embedding_hash is distinct from content_hash;

-- HNSW rebuilt with ef_construction 128 (pgvector's default is 64): on clustered vectors the
-- default graph left recall@10 near 0.97 at any ef_search; 128 gives 0.998 at ef_search 100.
drop index memlayer.memories_embedding_384;
drop index memlayer.memories_embedding_512;
drop index memlayer.memories_embedding_768;
drop index memlayer.memories_embedding_1024;
drop index memlayer.memories_embedding_1536;
create index memories_embedding_384 on memlayer.memories
  using hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) with (m = 16, ef_construction = 128)
  where embedding_dims = 384;
create index memories_embedding_512 on memlayer.memories
  using hnsw ((embedding::halfvec(512)) halfvec_cosine_ops) with (m = 16, ef_construction = 128)
  where embedding_dims = 512;
create index memories_embedding_768 on memlayer.memories
  using hnsw ((embedding::halfvec(768)) halfvec_cosine_ops) with (m = 16, ef_construction = 128)
  where embedding_dims = 768;
create index memories_embedding_1024 on memlayer.memories
  using hnsw ((embedding::halfvec(1024)) halfvec_cosine_ops) with (m = 16, ef_construction = 128)
  where embedding_dims = 1024;
create index memories_embedding_1536 on memlayer.memories
  using hnsw ((embedding::halfvec(1536)) halfvec_cosine_ops) with (m = 16, ef_construction = 128)
  where embedding_dims = 1536;

-- Keyword leg: the GIN index leads with user_id (btree_gin), so a search reads the posting
-- lists of its own user only, not every user's memories that share a word.
create extension if not exists btree_gin;
drop index memlayer.memories_search_doc;
create index memories_search_doc on memlayer.memories using gin (user_id, search_doc);

-- Search reads the caller's memories through this view. Through the table, row-level
-- security keeps the planner from using an index for any operator not marked leakproof, as
-- the full-text `@@` is not: every keyword search read all of the user's rows. The view runs
-- with its owner's rights (security_invoker off; the owner bypasses RLS) and is itself the
-- isolation: it returns only the rows of the `sub` in the transaction's JWT claims, so the
-- database still keeps users apart. (Not a security barrier, so leaky functions in a query's
-- own conditions may see rows the view then drops: memlayer's SQL is the only SQL it runs.)
-- A migration that adds a memories column the search filters use recreates it.
create view memlayer.search_memories with (security_invoker = false) as
  select * from memlayer.memories where user_id = (select auth.jwt() ->> 'sub');
grant select on memlayer.search_memories to authenticated;
