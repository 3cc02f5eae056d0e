-- `hedgewatch outbox list`: notifications by state ('undelivered': queued, retrying and dead;
-- 'dead'; 'all'), oldest first.
SELECT key, channel, state, events, attempts, runs, last_error, delivered_at, created_run
FROM delivery_status
WHERE CASE $state WHEN 'all' THEN true
                  WHEN 'dead' THEN state = 'dead'
                  ELSE state <> 'delivered' END
ORDER BY created_run, key, channel;
