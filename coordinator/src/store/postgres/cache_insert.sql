-- $1 segment, $2 now, $3 keys. Sorted so that concurrent writers of
-- overlapping keys take their row locks in the same order (no deadlock).
INSERT INTO cache_index (key, segment, created_at)
SELECT k, $1, $2 FROM UNNEST($3::text[]) AS k ORDER BY k
ON CONFLICT (key) DO NOTHING
