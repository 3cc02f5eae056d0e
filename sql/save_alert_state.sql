-- Replace the state of ($rule, $subject) (no upsert: a DuckLake has no keys).
DELETE FROM alert_state WHERE rule = $rule AND subject = $subject;
INSERT INTO alert_state (
    rule, subject, status, since, pending_since, last_fired_at, last_resolved_at,
    last_notified_at, last_value, episode, severity, no_data_since, clearing_since,
    last_breach_at, arm, evaluated_at
) VALUES (
    $rule, $subject, $status, $since, $pending_since, $last_fired_at, $last_resolved_at,
    $last_notified_at, $last_value, $episode, $severity, $no_data_since, $clearing_since,
    $last_breach_at, $arm, $evaluated_at
);
