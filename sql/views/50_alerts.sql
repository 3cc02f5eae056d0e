-- Alert views: where every (rule, subject) stands, and the outbox.

-- One row per (rule, subject): its state, "no data" made visible, the arm it fired on, whether an
-- inhibiting alert muted it, and any active silence.
CREATE OR REPLACE VIEW alert_status AS
SELECT s.rule, s.subject, s.status,
       s.no_data_since IS NOT NULL AS no_data,
       s.no_data_since, s.severity, s.since, s.last_value, s.episode,
       s.last_fired_at, s.last_resolved_at, s.evaluated_at, s.arm,
       -- while firing: the alert whose firing muted this one (inhibition), if any
       (SELECT json_extract_string(e.context, '$.muted_by') FROM alert_events AS e
         WHERE s.status = 'firing' AND e.rule = s.rule AND e.subject = s.subject
           AND e.episode = s.episode AND e.kind = 'firing') AS muted_by,
       (SELECT max(x.until) FROM alert_silences AS x
         WHERE x.rule IN ('*', s.rule) AND x.subject IN ('*', s.subject) AND x.until > now())
           AS silenced_until
FROM alert_state AS s;

-- The outbox, one row per notification and channel, with its delivery bookkeeping: the runs that
-- tried it, its sends that went out unanswered, and when and why it was given up ('dead').
CREATE OR REPLACE VIEW outbox AS
SELECT key, channel, coalesce(status, 'queued') AS status, len(event_keys) AS events,
       attempts, coalesce(runs, 0) AS runs, interrupted, coalesce(uncertain, 0) AS uncertain,
       last_error, sending_since, delivered_at, dead_at, dead_reason, dead_reported_at,
       created_run
FROM deliveries;
