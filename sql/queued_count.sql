-- Notifications in the outbox a run would send: not delivered yet, not given up.
SELECT count(*) AS queued FROM deliveries
WHERE delivered_at IS NULL AND coalesce(status, 'queued') <> 'dead';
