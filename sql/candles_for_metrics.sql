-- Closes of the configured instruments from $since on (through $until when given), labelled with
-- the config's instrument id.
SELECT w.instrument, c.open_time, c.close
FROM candles AS c
JOIN instruments_staged AS w
  ON c.venue = w.venue AND c.market = w.market AND c.symbol = w.symbol AND c.interval = w.interval
WHERE c.open_time >= $since AND ($until IS NULL OR c.open_time <= $until)
ORDER BY w.instrument, c.open_time;
