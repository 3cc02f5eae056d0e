-- Replace the staged candles' keys, then insert them (run inside one transaction).
DELETE FROM candles AS c
USING staged AS s
WHERE c.venue = s.venue AND c.market = s.market AND c.symbol = s.symbol
  AND c.interval = s.interval AND c.open_time = s.open_time;

INSERT INTO candles BY NAME
SELECT venue, market, symbol, interval, open_time, open, high, low, close, volume, quote_volume, trades
FROM staged
ORDER BY open_time;  -- time order: row groups span short time ranges, recent reads skip the rest
