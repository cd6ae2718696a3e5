-- Whose fault a failed job's error is: 'input' (the job's spec or data
-- files; commands exit 2) or 'runtime' (exit 1). NULL, as for jobs failed
-- before this column, reads as 'runtime'.
ALTER TABLE jobs ADD COLUMN error_kind TEXT;
