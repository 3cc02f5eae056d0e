-- The outcome of one run's send: delivered; back to queued with the (redacted) error; or, given
-- a reason to give up ($dead_reason), dead. $uncertain: the send went out and got no answer.
UPDATE deliveries
SET last_error = $error, attempts = attempts + $tries,
    runs = coalesce(runs, 0) + 1,
    uncertain = coalesce(uncertain, 0) + CASE WHEN $uncertain THEN 1 ELSE 0 END,
    status = CASE WHEN $error IS NULL THEN 'delivered'
                  WHEN $dead_reason IS NOT NULL THEN 'dead'
                  ELSE 'queued' END,
    delivered_at = CASE WHEN $error IS NULL THEN $at ELSE NULL END,
    dead_at = CASE WHEN $error IS NOT NULL AND $dead_reason IS NOT NULL THEN $at ELSE NULL END,
    dead_reason = CASE WHEN $error IS NOT NULL THEN $dead_reason ELSE NULL END
WHERE key = $key;
