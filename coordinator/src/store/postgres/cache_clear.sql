DELETE FROM cache_index
