SELECT COALESCE((SELECT SUM(completed_count) FROM shards), 0),
       COALESCE((SELECT SUM(failed_count) FROM shards), 0),
       COALESCE((SELECT SUM(cached) FROM jobs), 0),
       (SELECT COUNT(*) FROM cache_index)
