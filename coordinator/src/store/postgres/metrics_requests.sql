SELECT COALESCE((SELECT SUM(completed_count) FROM shards), 0)::bigint,
       COALESCE((SELECT SUM(failed_count) FROM shards), 0)::bigint,
       COALESCE((SELECT SUM(cached) FROM jobs), 0)::bigint,
       (SELECT COUNT(*) FROM cache_index)
