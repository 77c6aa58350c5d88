-- Keyword search reads the GIN index without its pending list (bench/postgres.py, README
-- "Postgres search").
--
-- With `fastupdate` on (GIN's default) new rows' entries wait in an unsorted pending list
-- until a vacuum or until it outgrows `gin_pending_list_limit` (4 MB), and every search reads
-- that whole list: after a bulk load of 11k memories all of them were still there (395 pages)
-- and the keyword leg spent 8 of its 12 ms scanning it; under steady ingest it holds up to
-- 4 MB. Off, each insert puts its entries in the index itself (a little slower to write).
alter index memlayer.memories_search_doc set (fastupdate = off);
-- what is pending now goes into the index (turning fastupdate off does not flush it)
select gin_clean_pending_list('memlayer.memories_search_doc'::regclass);
