UPDATE shards
SET state = 'running', attempt = attempt + 1, lease_owner = ?1, lease_expires_at = ?2,
    progress = 0, updated_at = ?3
WHERE id IN (
    SELECT s.id FROM shards s JOIN jobs j ON j.id = s.job_id
    WHERE s.state = 'available' AND s.next_visible_at <= ?3 AND j.state = 'running'
      AND j.backend IN (SELECT value FROM json_each(?4))
    ORDER BY j.created_at, s.job_id, s.seq
    LIMIT ?5
)
RETURNING id, job_id, attempt, lease_expires_at, requests_json
