-- Dead notifications an operator may requeue: every one, or those named (by key, or by the ref a
-- message shows: the key without its channel), optionally of one channel only.
SELECT key, channel
FROM deliveries
WHERE status = 'dead'
  AND ($all OR list_contains($keys, key)
       OR list_contains($keys, regexp_replace(key, '\|[^|]*$', '')))
  AND ($channel IS NULL OR channel = $channel)
ORDER BY key;
