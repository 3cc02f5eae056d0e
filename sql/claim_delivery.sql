-- Mark a notification as being sent (committed before the channel is called).
UPDATE deliveries
SET status = 'sending', sending_since = $at,
    interrupted = coalesce(interrupted, 0) + CASE WHEN $interrupted THEN 1 ELSE 0 END
WHERE key = $key;
