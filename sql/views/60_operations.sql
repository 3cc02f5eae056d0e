-- Operations: how the hourly runs went and where each notification stands.
-- Recreated on every start, like every view file.

-- One row per run, newest first, with the counts its summary recorded.
CREATE OR REPLACE VIEW run_history AS
SELECT run_id, started_at, finished_at,
       date_diff('millisecond', started_at, finished_at) / 1000.0 AS duration_s,
       as_of, status,
       CAST(summary->>'$.fetched.candles' AS INTEGER) AS candles,
       CAST(summary->>'$.fetched.funding' AS INTEGER) AS funding,
       CAST(coalesce(json_array_length(summary->'$.gaps'), 0) AS INTEGER) AS gaps,
       CAST(coalesce(json_array_length(summary->'$.failures'), 0) AS INTEGER) AS failures,
       CAST(summary->>'$.computed.hours_evaluated' AS INTEGER) AS hours_evaluated,
       CAST(coalesce(json_array_length(summary->'$.alerts'), 0) AS INTEGER) AS alert_events,
       CAST(summary->>'$.deliveries.delivered' AS INTEGER) AS delivered,
       CAST(summary->>'$.deliveries.failed' AS INTEGER) AS delivery_failures,
       summary
FROM runs
ORDER BY started_at DESC;

-- The outbox as people ask about it: one row per notification and channel, with its state.
CREATE OR REPLACE VIEW delivery_status AS
-- 'dead': given up after `alerts.delivery_max_runs` runs (`hedgewatch outbox requeue` retries it).
SELECT key, channel,
       CASE WHEN delivered_at IS NOT NULL THEN 'delivered'
            WHEN status = 'dead' THEN 'dead'
            WHEN attempts = 0 THEN 'queued'
            ELSE 'retrying' END AS state,
       len(event_keys) AS events,
       attempts, coalesce(runs, 0) AS runs,
       coalesce(dead_reason, last_error) AS last_error, delivered_at, created_run
FROM deliveries;
