-- Replace the metric rows in [$since, $until] (UTC; a NULL $until: no end) with the freshly
-- computed ones (one transaction).
DELETE FROM pair_correlations WHERE open_time >= $since AND ($until IS NULL OR open_time <= $until);
INSERT INTO pair_correlations BY NAME SELECT * FROM pairs_staged;
DELETE FROM hedge_metrics WHERE open_time >= $since AND ($until IS NULL OR open_time <= $until);
INSERT INTO hedge_metrics BY NAME SELECT * FROM hedges_staged;
DELETE FROM basket_metrics WHERE open_time >= $since AND ($until IS NULL OR open_time <= $until);
INSERT INTO basket_metrics BY NAME SELECT * FROM baskets_staged;
DELETE FROM ewma_correlations WHERE open_time >= $since AND ($until IS NULL OR open_time <= $until);
INSERT INTO ewma_correlations BY NAME SELECT * FROM ewma_staged;
