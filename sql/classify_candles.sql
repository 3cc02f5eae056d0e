-- How the staged candles compare with the stored ones: new, changed (any value differs) or
-- unchanged, the earliest open time (UTC) among the new and changed ones, and the first and
-- last of them (the range the read snapshot republishes).
SELECT count(*) FILTER (WHERE c.open_time IS NULL) AS new,
       count(*) FILTER (
           WHERE c.open_time IS NOT NULL
             AND (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)
                 IS DISTINCT FROM (s.open, s.high, s.low, s.close, s.volume, s.quote_volume, s.trades)
       ) AS changed,
       min(s.open_time) FILTER (
           WHERE c.open_time IS NULL
              OR (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)
                 IS DISTINCT FROM (s.open, s.high, s.low, s.close, s.volume, s.quote_volume, s.trades)
       ) AS earliest,
       max(s.open_time) FILTER (
           WHERE c.open_time IS NULL
              OR (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)
                 IS DISTINCT FROM (s.open, s.high, s.low, s.close, s.volume, s.quote_volume, s.trades)
       ) AS latest
FROM staged AS s
LEFT JOIN candles AS c
  ON c.venue = s.venue AND c.market = s.market AND c.symbol = s.symbol
 AND c.interval = s.interval AND c.open_time = s.open_time;
