-- When was each basket most stressed (highest average pairwise correlation), per window?
SELECT basket, window_hours, open_time, round(avg_corr, 3) AS avg_corr, n_pairs
FROM market_stress
WHERE avg_corr IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY basket, window_hours ORDER BY avg_corr DESC) = 1
ORDER BY basket, window_hours;
