-- Replace the metric rows in [$since, $until] (UTC; a NULL $until: no end) with the freshly
-- computed ones (one transaction). Rows go in time order, so each stored row group spans a
-- short time range and reads of recent hours (the run, the read snapshot) skip the rest.
DELETE FROM pair_correlations WHERE open_time >= $since AND ($until IS NULL OR open_time <= $until);
INSERT INTO pair_correlations BY NAME SELECT * FROM pairs_staged ORDER BY open_time;
DELETE FROM hedge_metrics WHERE open_time >= $since AND ($until IS NULL OR open_time <= $until);
INSERT INTO hedge_metrics BY NAME SELECT * FROM hedges_staged ORDER BY open_time;
DELETE FROM basket_metrics WHERE open_time >= $since AND ($until IS NULL OR open_time <= $until);
INSERT INTO basket_metrics BY NAME SELECT * FROM baskets_staged ORDER BY open_time;
DELETE FROM ewma_correlations WHERE open_time >= $since AND ($until IS NULL OR open_time <= $until);
INSERT INTO ewma_correlations BY NAME SELECT * FROM ewma_staged ORDER BY open_time;
