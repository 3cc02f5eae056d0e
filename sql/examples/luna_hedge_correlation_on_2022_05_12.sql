-- How did the LUNA hedge's 24h correlation evolve as it decoupled on 12 May 2022?
SELECT open_time, round(correlation, 3) AS correlation, round(effectiveness, 3) AS effectiveness,
       n_obs
FROM hedge_metrics
WHERE hedge = 'luna-vs-btc-perp' AND window_hours = 24
  AND open_time >= TIMESTAMPTZ '2022-05-12 00:00:00+00'
  AND open_time < TIMESTAMPTZ '2022-05-13 00:00:00+00'
ORDER BY open_time;
