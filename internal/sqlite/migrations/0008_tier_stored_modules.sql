-- Tier limits max_stored_modules and max_stored_module_bytes: the module
-- registry's quota per user (how many modules, and their bytes together).
-- Frozen SQL: the defaults of the four default tiers are written here; a
-- tier made by an admin gets the free tier's. Users already over their new
-- quota keep their modules and cannot store more until they delete some.
ALTER TABLE tiers ADD COLUMN max_stored_modules      INTEGER NOT NULL DEFAULT 10;
ALTER TABLE tiers ADD COLUMN max_stored_module_bytes INTEGER NOT NULL DEFAULT 20971520;
UPDATE tiers SET max_stored_modules = 100, max_stored_module_bytes = 209715200 WHERE name = 'basic';
UPDATE tiers SET max_stored_modules = 1000, max_stored_module_bytes = 2147483648 WHERE name = 'pro';
UPDATE tiers SET max_stored_modules = 10000, max_stored_module_bytes = 21474836480 WHERE name = 'enterprise';
