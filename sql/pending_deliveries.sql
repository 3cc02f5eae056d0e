-- Every notification not yet delivered nor given up, oldest key first ('sending': a send was cut
-- short). `uncertain` counts the sends that may have reached the channel: unanswered ones and
-- interrupted ones, the cut-short send in progress included.
SELECT key, channel, event_keys, coalesce(status, 'queued') AS status,
       coalesce(runs, 0) AS runs,
       coalesce(uncertain, 0) + coalesce(interrupted, 0)
           + CASE WHEN status = 'sending' THEN 1 ELSE 0 END AS uncertain,
       sending_since
FROM deliveries
WHERE delivered_at IS NULL AND coalesce(status, 'queued') <> 'dead'
ORDER BY key;
