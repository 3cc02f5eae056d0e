-- Remember that $source was imported into the staged series (once per series and source).
INSERT INTO import_sources
SELECT s.venue, s.market, s.symbol, s.interval, $source, now()
FROM series_staged AS s
WHERE NOT EXISTS (
    SELECT 1 FROM import_sources AS i
    WHERE i.venue = s.venue AND i.market = s.market AND i.symbol = s.symbol
      AND i.interval = s.interval AND i.source = $source
);
