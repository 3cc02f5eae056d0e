-- How much history is stored per series, and how fresh is it?
SELECT venue, market, symbol, first_open_time, last_open_time, candles,
       date_diff('hour', last_open_time, now()) AS hours_behind_now
FROM series
ORDER BY venue, market, symbol;
