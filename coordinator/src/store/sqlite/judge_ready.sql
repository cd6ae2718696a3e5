-- Waiting documents that wait for no shard, then those whose last shard has
-- finished: the walk goes over the job's finished shards through the
-- partial index on waiting items, not over every item.
SELECT doc_index, wait_seqs, item_json FROM judge_items
WHERE job_id = ?1 AND state = 'waiting' AND wait_seq < 0
UNION ALL
SELECT i.doc_index, i.wait_seqs, i.item_json
FROM shards s
JOIN judge_items i ON i.job_id = s.job_id AND i.wait_seq = s.seq AND i.state = 'waiting'
WHERE s.job_id = ?1 AND s.state IN ('completed', 'dead', 'cancelled')
LIMIT ?2
