-- Every (rule, subject) with its state, for `hedgewatch alerts list`.
SELECT rule, subject,
       CASE WHEN no_data THEN status || ' (no data)' ELSE status END AS status,
       severity, arm, since, last_value, episode, no_data_since, evaluated_at, muted_by,
       silenced_until
FROM alert_status
ORDER BY rule, subject;
