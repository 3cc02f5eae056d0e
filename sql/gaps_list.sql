-- Missing candles per series, optionally of one venue and/or symbol.
SELECT venue, market, symbol, interval, first_missing, last_missing, missing_hours
FROM gaps
WHERE ($venue IS NULL OR venue = $venue) AND ($symbol IS NULL OR symbol = $symbol)
ORDER BY ALL;
