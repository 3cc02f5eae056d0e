-- How did the last runs go?
SELECT started_at, round(duration_s, 1) AS duration_s, status, candles, gaps, failures,
       alert_events, delivered, delivery_failures
FROM run_history
LIMIT 24;
