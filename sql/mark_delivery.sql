-- The outcome of a send: delivered, or back to queued with the (redacted) error.
UPDATE deliveries
SET last_error = $error, attempts = attempts + $tries,
    status = CASE WHEN $error IS NULL THEN 'delivered' ELSE 'queued' END,
    delivered_at = CASE WHEN $error IS NULL THEN $at ELSE NULL END
WHERE key = $key;
