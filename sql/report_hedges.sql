-- Hedge correlation and effectiveness from $since (UTC), for the HTML report.
SELECT hedge, window_hours, open_time, correlation, effectiveness
FROM hedge_metrics
WHERE open_time >= $since
ORDER BY hedge, window_hours, open_time;
