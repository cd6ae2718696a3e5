-- The kind of the shard failure that failed a job (`configuration`: no
-- attempt could succeed, so the job failed at its first), for clients that
-- tell their users what to do. NULL for other failures and older rows.
ALTER TABLE jobs ADD COLUMN error_kind TEXT;
