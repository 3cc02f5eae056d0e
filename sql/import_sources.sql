-- The sources already imported into the staged series (venue, market, symbol, interval).
SELECT i.venue, i.market, i.symbol, i.interval, i.source
FROM import_sources AS i
JOIN series_staged AS s USING (venue, market, symbol, interval)
ORDER BY ALL;
