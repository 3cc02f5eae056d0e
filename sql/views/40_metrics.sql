-- Views over the correlation engine's tables. Times are UTC open-time labels of the last hour
-- inside each window; correlations are unitless in [-1, 1], z-scores in standard deviations.

-- Every stored pair correlation in both orientations plus the unit diagonal: one row per cell
-- of a basket's correlation matrix at each hour and window (pivot it for a heatmap).
CREATE OR REPLACE VIEW correlation_matrix AS
WITH cells AS (
    SELECT window_hours, open_time, a AS row_id, b AS col_id, corr, n_obs FROM pair_correlations
    UNION ALL
    SELECT window_hours, open_time, b AS row_id, a AS col_id, corr, n_obs FROM pair_correlations
),
diagonal AS (
    SELECT DISTINCT window_hours, open_time, row_id, row_id AS col_id, 1.0 AS corr,
           CAST(NULL AS INTEGER) AS n_obs
    FROM cells
)
SELECT * FROM cells
UNION ALL
SELECT * FROM diagonal;

-- The newest hour of correlation_matrix per window.
CREATE OR REPLACE VIEW latest_correlation_matrix AS
SELECT m.*
FROM correlation_matrix AS m
JOIN (SELECT window_hours, max(open_time) AS open_time FROM pair_correlations GROUP BY ALL) AS l
  USING (window_hours, open_time);

-- Market stress per basket, window and hour, with each metric against its trailing baseline,
-- and the stress signals the alert rules read: the member set, the basket's return, its fall
-- from the window's high, realised volatility and dispersion, each with its robust z, and the
-- average correlation's robust z on the Fisher scale.
-- Supersedes the narrower market_stress of 10_market.sql (same columns first).
CREATE OR REPLACE VIEW market_stress AS
SELECT basket, window_hours, open_time, avg_corr, n_pairs, n_obs,
       avg_corr_adj, avg_corr_baseline, avg_corr_z,
       absorption_ratio, absorption_z,
       corr_z, members, n_members, basket_return, drawdown, drawdown_z,
       vol, vol_z, dispersion, dispersion_z
FROM basket_metrics;

-- Hedge correlation with its confidence interval and the test against the longest window.
CREATE OR REPLACE VIEW hedge_breaks AS
SELECT hedge, window_hours, open_time, n_obs,
       correlation, corr_ci_low, corr_ci_high, corr_baseline, break_z,
       min_var_ratio, held_ratio, rebalance, residual_vol, effectiveness
FROM hedge_metrics;

-- The newest EWMA correlation of every pair and half-life.
CREATE OR REPLACE VIEW latest_ewma_correlations AS
SELECT *
FROM ewma_correlations
QUALIFY row_number() OVER (PARTITION BY a, b, halflife_hours ORDER BY open_time DESC) = 1;
