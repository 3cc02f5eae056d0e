-- Replace the states of every (rule, subject) in `states_staged` (no upsert: a DuckLake has no
-- keys); one statement pair for a run's states, not one per rule and subject.
DELETE FROM alert_state
WHERE rule || chr(0) || subject IN (SELECT rule || chr(0) || subject FROM states_staged);
INSERT INTO alert_state (
    rule, subject, status, since, pending_since, last_fired_at, last_resolved_at,
    last_notified_at, last_value, episode, severity, no_data_since, clearing_since,
    last_breach_at, arm, evaluated_at
)
SELECT
    rule, subject, status, since, pending_since, last_fired_at, last_resolved_at,
    last_notified_at, last_value, episode, severity, no_data_since, clearing_since,
    last_breach_at, arm, evaluated_at
FROM states_staged;
