-- Notifications in the outbox not delivered yet.
SELECT count(*) AS queued FROM deliveries WHERE delivered_at IS NULL;
