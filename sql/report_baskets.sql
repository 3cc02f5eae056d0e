-- Basket average correlation from $since (UTC), for the HTML report.
SELECT basket, window_hours, open_time, avg_corr, n_pairs
FROM market_stress
WHERE open_time >= $since
ORDER BY basket, window_hours, open_time;
