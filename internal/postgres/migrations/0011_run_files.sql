-- The files a background run's outputs matched, kept with its record (and
-- deleted with it): JSON as the record carries them
-- (wasmwiz.EncodeOutputFiles), their content within the tier's
-- max_stored_output_bytes; NULL for a run that asked for none.
ALTER TABLE runs ADD COLUMN files BYTEA;
