-- Give a notification up without sending it again (its channel cannot drop a duplicate and it may
-- already have arrived twice over).
UPDATE deliveries
SET status = 'dead', dead_at = $at, dead_reason = $reason
WHERE key = $key AND delivered_at IS NULL;
