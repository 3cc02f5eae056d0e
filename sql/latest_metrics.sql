-- The newest hedge correlation/effectiveness and basket average correlation per window.
SELECT 'hedge' AS kind, hedge AS subject, window_hours, open_time, correlation AS value,
       effectiveness, n_obs
FROM hedge_metrics
QUALIFY row_number() OVER (PARTITION BY hedge, window_hours ORDER BY open_time DESC) = 1
UNION ALL
SELECT 'basket', basket, window_hours, open_time, avg_corr, NULL, n_obs
FROM basket_metrics
QUALIFY row_number() OVER (PARTITION BY basket, window_hours ORDER BY open_time DESC) = 1
ORDER BY ALL;
