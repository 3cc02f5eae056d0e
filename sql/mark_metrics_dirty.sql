-- Metrics from $since (UTC) on must be recomputed: keep the earliest hour marked.
DELETE FROM cursors WHERE name = 'metrics.dirty_since' AND value > $since;
INSERT INTO cursors
SELECT 'metrics.dirty_since', $since
WHERE NOT EXISTS (SELECT 1 FROM cursors WHERE name = 'metrics.dirty_since');
