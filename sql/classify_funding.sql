-- How the staged funding rows compare with the stored ones, and the earliest candle hour (UTC)
-- a new or revised payment changes: it is added to the hourly candle before it settles. Then
-- the first and last funding time that differs at all (the range the read snapshot republishes).
SELECT count(*) FILTER (WHERE f.funding_time IS NULL) AS new,
       count(*) FILTER (
           WHERE f.funding_time IS NOT NULL
             AND (f.funding_rate, f.mark_price) IS DISTINCT FROM (s.funding_rate, s.mark_price)
       ) AS changed,
       date_trunc('hour', min(s.funding_time) FILTER (
           WHERE f.funding_time IS NULL OR f.funding_rate IS DISTINCT FROM s.funding_rate
       ) - INTERVAL 1 HOUR) AS earliest,
       min(s.funding_time) FILTER (
           WHERE f.funding_time IS NULL
              OR (f.funding_rate, f.mark_price) IS DISTINCT FROM (s.funding_rate, s.mark_price)
       ) AS first_changed,
       max(s.funding_time) FILTER (
           WHERE f.funding_time IS NULL
              OR (f.funding_rate, f.mark_price) IS DISTINCT FROM (s.funding_rate, s.mark_price)
       ) AS last_changed
FROM staged AS s
LEFT JOIN funding AS f
  ON f.venue = s.venue AND f.symbol = s.symbol AND f.funding_time = s.funding_time;
