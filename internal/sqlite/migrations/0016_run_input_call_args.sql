-- A background run's args and function params, kept whole with its input
-- until it ends (JSON: {"args":[…],"params":[…]}, NULL for none), now that
-- its record keeps them only up to 8 KiB (wasmwiz.RecordDetailBytes). A
-- run queued before this migration has NULL and runs on its record's,
-- which were kept whole then.
ALTER TABLE run_inputs ADD COLUMN call_args BLOB;
