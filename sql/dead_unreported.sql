-- Notifications given up whose report has not been sent yet, oldest first.
SELECT key, channel, coalesce(runs, 0) AS runs, attempts, dead_reason, dead_at
FROM deliveries
WHERE status = 'dead' AND dead_reported_at IS NULL
ORDER BY dead_at, key;
