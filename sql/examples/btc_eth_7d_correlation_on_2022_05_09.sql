-- What was the 7-day BTC/ETH correlation on 9 May 2022 (end of day, UTC)?
SELECT a, b, open_time, corr, n_obs
FROM pair_correlations
WHERE window_hours = 168
  AND ((a = 'BTC' AND b = 'ETH') OR (a = 'ETH' AND b = 'BTC'))
  AND open_time = TIMESTAMPTZ '2022-05-09 23:00:00+00';
