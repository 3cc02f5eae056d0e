-- Basket metrics from $since (UTC), for the HTML report: the average correlation and what the
-- default stress rules watch (fall from the window's high, realised volatility, dispersion and
-- the correlation against its normal, each in robust units).
SELECT basket, window_hours, open_time, avg_corr, n_pairs,
       drawdown_z, vol_z, dispersion_z, corr_z
FROM market_stress
WHERE open_time >= $since
ORDER BY basket, window_hours, open_time;
