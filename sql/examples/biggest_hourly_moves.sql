-- The ten biggest hourly moves in the stored history (log returns, never across a gap).
SELECT venue, market, symbol, open_time, round(log_return, 4) AS log_return,
       round(exp(log_return) - 1, 4) AS simple_return
FROM returns
ORDER BY abs(log_return) DESC
LIMIT 10;
