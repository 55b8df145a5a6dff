-- The files a background run takes in, kept with its input until it ends:
-- JSON of the mount and the entries (wasmwiz.EncodeRunFiles), NULL for a
-- run without files.
ALTER TABLE run_inputs ADD COLUMN files BLOB;
