-- Queue one digest for a channel, once: a retried run finds its key queued already.
INSERT INTO deliveries (key, channel, event_keys, created_run)
SELECT $key, $channel, $event_keys, $run_id
WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE key = $key);
