-- Dead letters: a notification still undelivered after `alerts.delivery_max_runs` runs is given up
-- (status 'dead'), reported once, and sent again only when an operator requeues it.
ALTER TABLE deliveries ADD COLUMN runs INTEGER DEFAULT 0;       -- delivery runs that tried it
ALTER TABLE deliveries ADD COLUMN uncertain INTEGER DEFAULT 0;  -- sends that went out unanswered
ALTER TABLE deliveries ADD COLUMN dead_at TIMESTAMPTZ;          -- when it was given up
ALTER TABLE deliveries ADD COLUMN dead_reason VARCHAR;          -- why (redacted, like last_error)
ALTER TABLE deliveries ADD COLUMN dead_reported_at TIMESTAMPTZ; -- when the report of it was sent
