UPDATE judge_items SET state = 'done'
WHERE job_id = ?1 AND doc_index IN (SELECT value FROM json_each(?2))
