-- A module's inspection without its lists of imports and exports, which it
-- counts in imports_omitted and exports_omitted instead
-- (wasmwiz.Inspection.Summary): what a list of modules reads and sends, so
-- that a list of a thousand modules does not read a thousand inspections of
-- up to ~256 KiB of lists each. NULL where there is no inspection.
ALTER TABLE modules ADD COLUMN summary TEXT;

UPDATE modules SET summary = json_set(inspection,
    '$.imports', json('[]'),
    '$.exports', json('[]'),
    '$.imports_omitted', coalesce(json_extract(inspection, '$.imports_omitted'), 0) +
        CASE WHEN json_type(inspection, '$.imports') = 'array' THEN json_array_length(inspection, '$.imports') ELSE 0 END,
    '$.exports_omitted', coalesce(json_extract(inspection, '$.exports_omitted'), 0) +
        CASE WHEN json_type(inspection, '$.exports') = 'array' THEN json_array_length(inspection, '$.exports') ELSE 0 END)
WHERE inspection IS NOT NULL AND inspection <> '';
