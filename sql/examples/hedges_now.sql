-- Which hedges are working right now? (A working hedge has a strongly negative correlation.)
SELECT hedge, window_hours, open_time, round(correlation, 3) AS correlation,
       round(min_var_ratio, 3) AS min_var_ratio, held_ratio,
       round(effectiveness, 3) AS effectiveness, n_obs, alert_status
FROM hedge_status
ORDER BY hedge, window_hours;
