-- Record one alert event, once: its key says rule|subject|episode|kind|hour.
INSERT INTO alert_events (
    key, rule, subject, ts, kind, value, threshold, severity, episode, context, silenced
)
SELECT $key, $rule, $subject, $ts, $kind, $value, $threshold, $severity, $episode, $context,
       $silenced
WHERE NOT EXISTS (SELECT 1 FROM alert_events WHERE key = $key);
