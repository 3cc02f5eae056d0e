-- The open times of one candle series, oldest first.
SELECT open_time
FROM candles
WHERE venue = $venue AND market = $market AND symbol = $symbol AND interval = $interval
ORDER BY open_time;
