-- Alert views: where every (rule, subject) stands, and the outbox.

-- One row per (rule, subject): its state, "no data" made visible, and any active silence.
CREATE OR REPLACE VIEW alert_status AS
SELECT s.rule, s.subject, s.status,
       s.no_data_since IS NOT NULL AS no_data,
       s.no_data_since, s.severity, s.since, s.last_value, s.episode,
       s.last_fired_at, s.last_resolved_at, s.evaluated_at,
       (SELECT max(x.until) FROM alert_silences AS x
         WHERE x.rule IN ('*', s.rule) AND x.subject IN ('*', s.subject) AND x.until > now())
           AS silenced_until
FROM alert_state AS s;

-- The outbox, one row per notification and channel, with its delivery bookkeeping.
CREATE OR REPLACE VIEW outbox AS
SELECT key, channel, coalesce(status, 'queued') AS status, len(event_keys) AS events,
       attempts, interrupted, last_error, sending_since, delivered_at, created_run
FROM deliveries;
