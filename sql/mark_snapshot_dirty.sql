-- Rows of $table in [$since, $until] (UTC; no $until: everything after) changed: the next
-- publication of the read snapshot rewrites the partitions they fall in.
INSERT INTO snapshot_dirty VALUES ($table, $since, $until);
