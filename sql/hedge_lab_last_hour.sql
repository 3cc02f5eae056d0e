-- The last hour both staged instruments have a candle (NULL when they never overlap).
SELECT max(open_time) AS last_hour
FROM (
    SELECT c.open_time
    FROM candles AS c
    JOIN instruments_staged AS w
      ON c.venue = w.venue AND c.market = w.market AND c.symbol = w.symbol
     AND c.interval = w.interval
    WHERE c.close > 0
    GROUP BY c.open_time
    HAVING count(DISTINCT w.instrument) = 2
);
