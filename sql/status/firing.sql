-- `hedgewatch status`: alerts firing now (muted ones say by what), most severe first.
SELECT rule, subject, severity, arm, since, last_value, muted_by, silenced_until
FROM alert_status
WHERE status = 'firing'
ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, since, rule, subject;
