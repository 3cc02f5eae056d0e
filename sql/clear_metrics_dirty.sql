-- The metrics from $since on are stored: clear the mark unless an earlier hour was marked since.
DELETE FROM cursors WHERE name = 'metrics.dirty_since' AND value >= $since;
