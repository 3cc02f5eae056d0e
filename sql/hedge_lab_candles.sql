-- Close and quote-currency volume of the staged instruments in [$start, $end), by instrument id.
-- A quote volume the source did not give (null, or 0 beside a base volume) is close x volume.
SELECT w.instrument, c.open_time, c.close,
       CASE WHEN c.quote_volume > 0 THEN c.quote_volume ELSE c.close * c.volume END
           AS quote_volume
FROM candles AS c
JOIN instruments_staged AS w
  ON c.venue = w.venue AND c.market = w.market AND c.symbol = w.symbol AND c.interval = w.interval
WHERE c.open_time >= $start AND c.open_time < $end
ORDER BY w.instrument, c.open_time;
