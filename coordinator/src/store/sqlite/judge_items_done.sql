-- Only waiting items: another replica's stage that judged them first wins,
-- and this transaction, changing fewer rows than it meant to, is undone.
-- The item is no longer needed, so its text is dropped.
UPDATE judge_items SET state = 'done', item_json = ''
WHERE job_id = ?1 AND doc_index IN (SELECT value FROM json_each(?2))
  AND state = 'waiting'
