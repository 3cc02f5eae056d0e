-- The newest stress metrics of every basket and window, for the Prometheus exposition.
SELECT basket, window_hours, epoch(open_time) AS open_time_s, n_obs, n_pairs, avg_corr,
       avg_corr_adj, avg_corr_baseline, avg_corr_z, absorption_ratio, absorption_z
FROM market_stress
QUALIFY row_number() OVER (PARTITION BY basket, window_hours ORDER BY open_time DESC) = 1
ORDER BY basket, window_hours;
