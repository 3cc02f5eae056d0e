-- Where every (rule, subject) stands, for the Prometheus exposition.
SELECT rule, subject, status, coalesce(severity, '') AS severity, no_data_since IS NOT NULL AS no_data
FROM alert_state
ORDER BY rule, subject;
