-- The alert events with the given keys, oldest first.
SELECT rule, subject, ts, kind, value, threshold, severity, episode, context
FROM alert_events
WHERE list_contains($keys, key)
ORDER BY ts, rule, subject;
