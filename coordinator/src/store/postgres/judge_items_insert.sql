-- Parallel arrays of doc indexes, last shards, shard lists and items.
INSERT INTO judge_items (job_id, doc_index, state, wait_seq, wait_seqs, item_json)
SELECT $1, t.doc_index, 'waiting', t.wait_seq, t.wait_seqs, t.item_json
FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[])
     AS t(doc_index, wait_seq, wait_seqs, item_json)
ON CONFLICT (job_id, doc_index) DO NOTHING
