-- Close and quote-currency volume of the staged instruments in [$start, $end), by instrument id.
SELECT w.instrument, c.open_time, c.close,
       coalesce(c.quote_volume, c.close * c.volume) AS quote_volume
FROM candles AS c
JOIN instruments_staged AS w
  ON c.venue = w.venue AND c.market = w.market AND c.symbol = w.symbol AND c.interval = w.interval
WHERE c.open_time >= $start AND c.open_time < $end
ORDER BY w.instrument, c.open_time;
