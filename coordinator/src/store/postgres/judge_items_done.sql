UPDATE judge_items SET state = 'done'
WHERE job_id = $1 AND doc_index = ANY($2::bigint[])
