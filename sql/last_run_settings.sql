-- The settings the newest run stored with its summary (runs store them when they changed).
SELECT CAST(summary->'$.settings' AS VARCHAR) AS settings
FROM runs
WHERE json_type(summary->'$.settings') = 'OBJECT'
ORDER BY started_at DESC
LIMIT 1;
