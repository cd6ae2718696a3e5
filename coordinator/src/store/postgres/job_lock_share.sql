-- Keeps the job from being deleted or leaving planning while its shards are written.
SELECT state FROM jobs WHERE id = $1 FOR SHARE
