-- ?1 duty name, ?2 holder, ?3 new expiry, ?4 now. Returns a row only when
-- ?2 holds the duty afterwards: it held it already, or it was free/expired.
INSERT INTO leader (name, holder, expires_at) VALUES (?1, ?2, ?3)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leader.holder = excluded.holder OR leader.expires_at <= ?4
RETURNING holder
