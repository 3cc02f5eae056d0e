-- The newest metrics of every hedge and window, for the Prometheus exposition.
SELECT hedge, window_hours, epoch(open_time) AS open_time_s, n_obs, correlation, beta,
       min_var_ratio, held_ratio, ratio_drift, effectiveness
FROM hedge_metrics
QUALIFY row_number() OVER (PARTITION BY hedge, window_hours ORDER BY open_time DESC) = 1
ORDER BY hedge, window_hours;
