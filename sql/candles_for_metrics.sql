-- Closes of the configured instruments from $since on (through $until when given), labelled with
-- the config's instrument id. The instruments come as parallel lists ($instrument, $venue,
-- $market, $symbol, $interval): no frame to register for a query every run and backtest makes.
WITH w AS (
    SELECT
        unnest($instrument::VARCHAR[]) AS instrument,
        unnest($venue::VARCHAR[]) AS venue,
        unnest($market::VARCHAR[]) AS market,
        unnest($symbol::VARCHAR[]) AS symbol,
        unnest($interval::VARCHAR[]) AS "interval"
)
SELECT w.instrument, c.open_time, c.close
FROM candles AS c
JOIN w
  ON c.venue = w.venue AND c.market = w.market AND c.symbol = w.symbol AND c.interval = w.interval
WHERE c.open_time >= $since AND ($until IS NULL OR c.open_time <= $until)
ORDER BY w.instrument, c.open_time;
