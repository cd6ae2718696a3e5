-- $1 model key. Reservations of one model run one at a time, so two of them
-- never both see room that only one fits in.
SELECT pg_advisory_xact_lock(hashtextextended($1, 0))
