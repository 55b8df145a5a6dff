-- The compile of a run (docs/RATIONALE.md, "Compiling is work"): the wall
-- time covers compiling the module and the guest, and a usage record says
-- how long each took. Runs recorded before have 0.

ALTER TABLE runs ADD COLUMN compile_ms REAL NOT NULL DEFAULT 0;
