-- Requeue a dead notification: tried again from the next run with a fresh budget of runs. The
-- attempts made so far stay counted.
UPDATE deliveries
SET status = 'queued', runs = 0, uncertain = 0, interrupted = 0,
    dead_at = NULL, dead_reason = NULL, dead_reported_at = NULL
WHERE key = $key AND status = 'dead';
