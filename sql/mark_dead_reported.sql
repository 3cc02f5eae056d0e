-- The report of these dead notifications went out (or was tried): never again for them.
UPDATE deliveries SET dead_reported_at = $at
WHERE status = 'dead' AND dead_reported_at IS NULL AND list_contains($keys, key);
