-- memlayer's tables (docs/data-model.md, "Postgres"). Every user-owned table has `user_id`
-- (the JWT `sub`, text) and row-level security: as role `authenticated` a request sees and
-- writes only the rows of the user in its `request.jwt.claims`. Workers, cleanup and admin
-- run as `service_role` (bypasses RLS) and scope by user explicitly.

create extension if not exists vector;

create schema if not exists memlayer;
grant usage on schema memlayer to authenticated, service_role;

-- array_to_string is only stable (it could format any element type); for text[] it is
-- immutable, which a generated column needs.
create function memlayer.joined_tags(tags text[]) returns text
  language sql immutable parallel safe
  as $$ select array_to_string(tags, ' ') $$;

create table memlayer.profiles (
  user_id text primary key,
  limits jsonb not null default '{}',
  memories integer not null default 0,
  bytes bigint not null default 0,
  tag_vocabulary text[] not null default '{}'
);

create table memlayer.day_counters (
  user_id text not null,
  day date not null,
  writes integer not null default 0,
  expires_at timestamptz not null,
  primary key (user_id, day)
);

create table memlayer.memories (
  user_id text not null,
  id text not null, -- ULID: sorts by creation time
  kind text not null,
  status text not null,
  version integer not null,
  provider text,
  tags text[] not null default '{}', -- the memory's own tags (list filter)
  search_tags text[] not null default '{}', -- own + analysis tags, normalized (search)
  title text,
  content text not null,
  content_hash text not null,
  created_at timestamptz not null,
  updated_at timestamptz not null,
  size_bytes integer not null,
  job_id text,
  dedupe_key text,
  record jsonb not null, -- the whole MemoryRecord
  -- the embedding (float16), the space it is from and the content it was computed from
  embedding halfvec,
  embedding_dims integer,
  embedding_space text,
  embedding_hash text,
  -- keyword leg: title and tags weigh above the text
  search_doc tsvector generated always as (
    setweight(to_tsvector('english', coalesce(title, '')), 'A')
    || setweight(to_tsvector('english', memlayer.joined_tags(search_tags)), 'A')
    || setweight(to_tsvector('english', content), 'B')
  ) stored,
  primary key (user_id, id)
);
-- Kept in the row, never out of line: a distance scan reads it for every candidate.
alter table memlayer.memories alter column embedding set storage plain;
create index memories_search_doc on memlayer.memories using gin (search_doc);
create index memories_unfinished on memlayer.memories (updated_at)
  where status in ('pending', 'processing');
-- Semantic leg: HNSW (cosine) per embedding size, as partial expression indexes, because one
-- index needs one dimension and the embedding size is a setting.
create index memories_embedding_384 on memlayer.memories
  using hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) where embedding_dims = 384;
create index memories_embedding_512 on memlayer.memories
  using hnsw ((embedding::halfvec(512)) halfvec_cosine_ops) where embedding_dims = 512;
create index memories_embedding_768 on memlayer.memories
  using hnsw ((embedding::halfvec(768)) halfvec_cosine_ops) where embedding_dims = 768;
create index memories_embedding_1024 on memlayer.memories
  using hnsw ((embedding::halfvec(1024)) halfvec_cosine_ops) where embedding_dims = 1024;
create index memories_embedding_1536 on memlayer.memories
  using hnsw ((embedding::halfvec(1536)) halfvec_cosine_ops) where embedding_dims = 1536;

create table memlayer.jobs (
  user_id text not null,
  id text not null,
  record jsonb not null,
  expires_at timestamptz not null,
  primary key (user_id, id)
);
create index jobs_expires_at on memlayer.jobs (expires_at);

create table memlayer.idempotency_keys (
  user_id text not null,
  scope text not null,
  key text not null,
  body_hash text not null,
  response jsonb not null,
  expires_at timestamptz not null,
  primary key (user_id, scope, key)
);
create index idempotency_keys_expires_at on memlayer.idempotency_keys (expires_at);

-- Request rates as GCRA: one theoretical arrival time per key. A user's (user_id set, erased
-- with the user) or an address's (user_id null).
create table memlayer.rate_limits (
  key text primary key,
  user_id text,
  tat double precision not null, -- epoch seconds
  expires_at timestamptz not null
);
create index rate_limits_expires_at on memlayer.rate_limits (expires_at);

create table memlayer.api_keys (
  user_id text not null,
  id text not null,
  key_hash text not null, -- sha256 of the key; the key itself is never stored
  revoked boolean not null default false,
  last_used_at timestamptz,
  record jsonb not null,
  expires_at timestamptz, -- set when revoked: the sweep removes it then
  primary key (user_id, id)
);
create unique index api_keys_live_hash on memlayer.api_keys (key_hash) where not revoked;

create table memlayer.connections (
  connection_id text primary key,
  user_id text not null,
  expires_at timestamptz not null,
  key_id text -- the API key it was opened with: revoking the key ends it
);
create index connections_user on memlayer.connections (user_id);

create table memlayer.captures (
  user_id text not null,
  provider text not null,
  conversation_id text not null,
  capture_id text not null,
  record jsonb not null,
  expires_at timestamptz not null,
  claimed_until timestamptz,
  cleanup_claim text,
  cleanup_claimed_at timestamptz,
  primary key (user_id, provider, conversation_id)
);
create index captures_expires_at on memlayer.captures (expires_at);

create table memlayer.uploads (
  user_id text not null,
  id text not null,
  status text not null,
  version integer not null,
  created_at timestamptz not null,
  purge_after timestamptz,
  record jsonb not null,
  cleanup_claim text,
  cleanup_claimed_at timestamptz,
  primary key (user_id, id)
);
create index uploads_open on memlayer.uploads (created_at)
  where status in ('awaiting', 'received', 'extracting');
create index uploads_purge_after on memlayer.uploads (purge_after) where purge_after is not null;

do $$
declare
  t text;
begin
  foreach t in array array[
    'profiles', 'day_counters', 'memories', 'jobs', 'idempotency_keys', 'rate_limits',
    'api_keys', 'connections', 'captures', 'uploads'
  ] loop
    execute format('alter table memlayer.%I enable row level security', t);
    execute format(
      'create policy own_rows on memlayer.%I for all to authenticated '
      'using (user_id = (select auth.jwt() ->> ''sub'')) '
      'with check (user_id = (select auth.jwt() ->> ''sub''))',
      t
    );
    execute format(
      'grant select, insert, update, delete on memlayer.%I to authenticated, service_role', t
    );
  end loop;
end
$$;
