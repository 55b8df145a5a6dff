-- Files in and out of a run (wasmwiz.Limits: max_files_in_bytes, max_files,
-- max_file_write_bytes, max_files_out_bytes). A tier made by an admin gets
-- the free tier's values; the default tiers get theirs.

ALTER TABLE tiers ADD COLUMN max_files_in_bytes   BIGINT NOT NULL DEFAULT 1048576;
ALTER TABLE tiers ADD COLUMN max_files            BIGINT NOT NULL DEFAULT 100;
ALTER TABLE tiers ADD COLUMN max_file_write_bytes BIGINT NOT NULL DEFAULT 16777216;
ALTER TABLE tiers ADD COLUMN max_files_out_bytes  BIGINT NOT NULL DEFAULT 1048576;

UPDATE tiers SET max_files_in_bytes = 10485760, max_files = 1000,
    max_file_write_bytes = 134217728, max_files_out_bytes = 10485760 WHERE name = 'basic';
UPDATE tiers SET max_files_in_bytes = 52428800, max_files = 10000,
    max_file_write_bytes = 1073741824, max_files_out_bytes = 52428800 WHERE name = 'pro';
UPDATE tiers SET max_files_in_bytes = 104857600, max_files = 50000,
    max_file_write_bytes = 4294967296, max_files_out_bytes = 104857600 WHERE name = 'enterprise';
