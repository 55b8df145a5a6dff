-- A module's inspection without its lists of imports and exports, which it
-- counts in imports_omitted and exports_omitted instead
-- (wasmwiz.Inspection.Summary): what a list of modules reads and sends, so
-- that a list of a thousand modules does not read a thousand inspections of
-- up to ~256 KiB of lists each. '' where there is no inspection.
ALTER TABLE modules ADD COLUMN summary TEXT NOT NULL DEFAULT '';

UPDATE modules SET summary = (
    (inspection::jsonb - 'imports' - 'exports') || jsonb_build_object(
        'imports', '[]'::jsonb,
        'exports', '[]'::jsonb,
        'imports_omitted', coalesce((inspection::jsonb ->> 'imports_omitted')::bigint, 0) +
            CASE WHEN jsonb_typeof(inspection::jsonb -> 'imports') = 'array'
                THEN jsonb_array_length(inspection::jsonb -> 'imports') ELSE 0 END,
        'exports_omitted', coalesce((inspection::jsonb ->> 'exports_omitted')::bigint, 0) +
            CASE WHEN jsonb_typeof(inspection::jsonb -> 'exports') = 'array'
                THEN jsonb_array_length(inspection::jsonb -> 'exports') ELSE 0 END)
)::text
WHERE inspection <> '';
