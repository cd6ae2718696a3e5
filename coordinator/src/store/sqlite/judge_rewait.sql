UPDATE judge_items SET wait_seq = ?3 WHERE job_id = ?1 AND doc_index = ?2 AND state = 'waiting'
