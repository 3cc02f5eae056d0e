-- Earliest open time among staged candles that are new or whose close differs from the stored one.
SELECT min(s.open_time) AS earliest
FROM staged AS s
LEFT JOIN candles AS c
  ON c.venue = s.venue AND c.market = s.market AND c.symbol = s.symbol
 AND c.interval = s.interval AND c.open_time = s.open_time
WHERE c.open_time IS NULL OR c.close IS DISTINCT FROM s.close;
