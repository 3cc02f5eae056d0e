-- Which pairs move most alike right now (newest 7-day correlations)?
SELECT a, b, open_time, round(corr, 3) AS corr, n_obs
FROM latest_correlations
WHERE window_hours = 168 AND corr IS NOT NULL
ORDER BY corr DESC
LIMIT 10;
