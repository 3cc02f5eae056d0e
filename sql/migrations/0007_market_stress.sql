-- Fast market stress on a fixed member set per window, and hedges against their own normal.
-- Robust baselines: median and MAD (x 1.4826) of the metric's own series over the
-- metrics.baseline_days before the row's UTC day.

ALTER TABLE basket_metrics ADD COLUMN corr_z DOUBLE;        -- robust z of avg_corr on the Fisher z scale
ALTER TABLE basket_metrics ADD COLUMN members VARCHAR;      -- comma-separated member set the row was computed on
ALTER TABLE basket_metrics ADD COLUMN n_members INTEGER;    -- size of that set (0: below coverage, no data)
ALTER TABLE basket_metrics ADD COLUMN basket_return DOUBLE; -- log return of the equal-weight basket over the window
ALTER TABLE basket_metrics ADD COLUMN drawdown DOUBLE;      -- log fall from the window's high to its end (>= 0)
ALTER TABLE basket_metrics ADD COLUMN drawdown_z DOUBLE;    -- drawdown / (median hourly vol of the baseline x sqrt(window))
ALTER TABLE basket_metrics ADD COLUMN vol DOUBLE;           -- realised hourly volatility of the basket return over the window
ALTER TABLE basket_metrics ADD COLUMN vol_z DOUBLE;         -- robust z of log(vol)
ALTER TABLE basket_metrics ADD COLUMN dispersion DOUBLE;    -- rms cross-sectional std. dev. of the members' hourly returns
ALTER TABLE basket_metrics ADD COLUMN dispersion_z DOUBLE;  -- robust z of log(dispersion)

ALTER TABLE hedge_metrics ADD COLUMN corr_z DOUBLE;             -- rise of correlation (Fisher z) vs its own normal, robust units
ALTER TABLE hedge_metrics ADD COLUMN effectiveness_drop DOUBLE; -- normal (median) effectiveness minus this one
ALTER TABLE hedge_metrics ADD COLUMN residual_vol_z DOUBLE;     -- robust z of log(residual_vol)
