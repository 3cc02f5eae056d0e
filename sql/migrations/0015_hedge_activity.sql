-- Thin hours for hedges: how much the position moves against its own normal, and the
-- effectiveness drop weighed by it (see transforms/hedges.py).

ALTER TABLE hedge_metrics ADD COLUMN activity DOUBLE;           -- position variance over the window / its normal (median)
ALTER TABLE hedge_metrics ADD COLUMN effectiveness_loss DOUBLE; -- effectiveness_drop x min(1, activity); in full when effectiveness < 0

-- Rows stored before these columns have them null: mark the metrics stale from the first stored
-- hedge hour, so the next run (or `hedgewatch recompute`) computes them for the whole history.
DELETE FROM cursors
WHERE name = 'metrics.dirty_since' AND value > (SELECT min(open_time) FROM hedge_metrics);
INSERT INTO cursors
SELECT 'metrics.dirty_since', first_hour
FROM (SELECT min(open_time) AS first_hour FROM hedge_metrics)
WHERE first_hour IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM cursors WHERE name = 'metrics.dirty_since');
