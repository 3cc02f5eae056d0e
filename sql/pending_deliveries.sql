-- Every notification not yet delivered, oldest key first ('sending': a send was cut short).
SELECT key, channel, event_keys, coalesce(status, 'queued') AS status
FROM deliveries
WHERE delivered_at IS NULL
ORDER BY key;
