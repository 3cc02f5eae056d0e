-- Each hedge's newest metrics and alert status, for the HTML report.
SELECT hedge, window_hours, open_time, correlation, min_var_ratio, held_ratio, ratio_drift,
       effectiveness, n_obs, alert_status
FROM hedge_status
ORDER BY hedge, window_hours;
