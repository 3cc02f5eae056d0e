-- Run health in one row (NULLs before the first run), for the Prometheus exposition.
WITH last AS (
    SELECT status, started_at, finished_at, duration_s, failures, candles
    FROM run_history
    LIMIT 1
)
SELECT last.status,
       epoch(last.started_at) AS started_s,
       epoch(last.finished_at) AS finished_s,
       last.duration_s,
       last.failures,
       last.candles,
       (SELECT epoch(max(finished_at)) FROM runs WHERE status = 'ok') AS last_ok_s,
       (SELECT count(*) FROM deliveries WHERE delivered_at IS NULL) AS undelivered,
       (SELECT count(*) FROM runs) AS runs
FROM (SELECT 1) AS one
LEFT JOIN last ON true;
