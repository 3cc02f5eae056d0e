-- Every alert state machine's state, and the hour it was last evaluated at (UTC).
SELECT rule, subject, status, since, pending_since, last_fired_at, last_resolved_at,
       last_notified_at, last_value, episode, severity, no_data_since, clearing_since,
       last_breach_at, arm, evaluated_at
FROM alert_state;
