-- Alert events from $since (UTC) with their deliveries, for the HTML report.
SELECT ts, rule, subject, kind, severity, value, threshold, delivered, notifications
FROM alert_history
WHERE ts >= $since
ORDER BY ts;
