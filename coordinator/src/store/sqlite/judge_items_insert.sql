INSERT INTO judge_items (job_id, doc_index, state, wait_seq, wait_seqs, item_json)
VALUES (?1, ?2, 'waiting', ?3, ?4, ?5)
ON CONFLICT (job_id, doc_index) DO NOTHING
