-- Gaps of the candle series in `ranges_staged` (i, venue, market, symbol, start, end; UTC) that
-- overlap each series' [start, end]: what one run asked the venues for.
SELECT g.venue, g.market, g.symbol, g.first_missing, g.last_missing, g.missing_hours
FROM gaps AS g
JOIN ranges_staged AS r
  ON g.venue = r.venue AND g.market = r.market AND g.symbol = r.symbol
 AND g.last_missing >= r."start" AND g.first_missing <= r."end"
ORDER BY r.i, g.first_missing;
