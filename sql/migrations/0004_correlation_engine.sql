-- Significance, baselines, residual risk, absorption ratio, rank and EWMA correlation.
-- Correlations are unitless in [-1, 1]; z statistics are in standard errors; times are UTC.

ALTER TABLE pair_correlations ADD COLUMN corr_ci_low DOUBLE;   -- 95 % Fisher z interval of corr, low end
ALTER TABLE pair_correlations ADD COLUMN corr_ci_high DOUBLE;  -- 95 % Fisher z interval of corr, high end
ALTER TABLE pair_correlations ADD COLUMN spearman DOUBLE;      -- rank correlation over the same hours; NULL unless metrics.spearman

ALTER TABLE hedge_metrics ADD COLUMN corr_ci_low DOUBLE;    -- 95 % Fisher z interval of correlation, low end
ALTER TABLE hedge_metrics ADD COLUMN corr_ci_high DOUBLE;   -- 95 % Fisher z interval of correlation, high end
ALTER TABLE hedge_metrics ADD COLUMN corr_baseline DOUBLE;  -- correlation over the longest configured window, same hour
ALTER TABLE hedge_metrics ADD COLUMN break_z DOUBLE;        -- Fisher z statistic of correlation vs corr_baseline (std. errors); NULL on the longest window
ALTER TABLE hedge_metrics ADD COLUMN residual_vol DOUBLE;   -- std. dev. of the held position's hourly log return (per hour, not annualised)
ALTER TABLE hedge_metrics ADD COLUMN rebalance DOUBLE;      -- hedge-leg units to add (+) or remove (-) to hold min_var_ratio, for the configured base size

ALTER TABLE basket_metrics ADD COLUMN absorption_ratio DOUBLE;   -- share (0..1) of variance in the top k eigenvectors of the correlation matrix
ALTER TABLE basket_metrics ADD COLUMN avg_corr_adj DOUBLE;       -- avg_corr after the Forbes–Rigobon volatility adjustment (vs the longest window)
ALTER TABLE basket_metrics ADD COLUMN avg_corr_baseline DOUBLE;  -- mean avg_corr over the trailing baseline (metrics.baseline_days, hours before)
ALTER TABLE basket_metrics ADD COLUMN avg_corr_z DOUBLE;         -- (avg_corr - baseline mean) / baseline std. dev.
ALTER TABLE basket_metrics ADD COLUMN absorption_z DOUBLE;       -- same z-score for absorption_ratio

-- EWMA correlation per pair and half-life: weights halve every halflife_hours hours.
CREATE TABLE ewma_correlations (
    a              VARCHAR     NOT NULL,  -- instrument id from the config
    b              VARCHAR     NOT NULL,
    halflife_hours INTEGER     NOT NULL,
    open_time      TIMESTAMPTZ NOT NULL,  -- last hour weighted, UTC
    n_obs          INTEGER     NOT NULL,  -- pairwise-complete hours inside the weighted history
    corr           DOUBLE                 -- NULL below the coverage minimum or on a ~constant leg
);
