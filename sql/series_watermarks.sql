-- Latest stored open time per candle series.
SELECT venue, market, symbol, interval, max(open_time) AS last_open_time, count(*) AS candles
FROM candles
GROUP BY ALL;
