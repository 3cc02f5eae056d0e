-- `hedgewatch status`: the newest runs, newest first.
SELECT run_id, started_at, duration_s, as_of, status, candles, failures, alert_events, delivered
FROM run_history
ORDER BY started_at DESC
LIMIT $limit;
