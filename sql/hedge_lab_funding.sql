-- Funding settlements of the staged perps around [$start, $end), by instrument id; each belongs
-- to the hour whose candle closes at the settlement.
SELECT w.instrument, f.funding_time, f.funding_rate
FROM funding AS f
JOIN instruments_staged AS w
  ON f.venue = w.venue AND f.symbol = w.symbol AND w.market = 'perp'
WHERE f.funding_time >= $start AND f.funding_time < $end + INTERVAL 1 HOUR
ORDER BY w.instrument, f.funding_time;
