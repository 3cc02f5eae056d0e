-- (rule, subject, episode) of firing alerts whose firing an inhibiting alert muted.
SELECT e.rule, e.subject, e.episode
FROM alert_events AS e
JOIN alert_state AS s
  ON s.rule = e.rule AND s.subject = e.subject AND s.episode = e.episode
WHERE s.status = 'firing' AND e.kind = 'firing'
  AND json_extract_string(e.context, '$.muted_by') IS NOT NULL;
