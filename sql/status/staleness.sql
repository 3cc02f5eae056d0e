-- `hedgewatch status`: each stored series' newest candle and how long ago it closed.
SELECT venue, market, symbol, last_open_time,
       round(date_diff('second', last_open_time + INTERVAL 1 HOUR, $now) / 3600.0, 1) AS age_hours,
       candles
FROM series
ORDER BY age_hours DESC, venue, market, symbol;
