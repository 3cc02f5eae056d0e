-- Every alert event with its direction, for the demo's timeline.
SELECT ts, kind, rule, subject, value, threshold,
       coalesce(json_extract_string(context, '$.direction'), 'above') AS direction
FROM alert_events
ORDER BY ts, rule, subject;
