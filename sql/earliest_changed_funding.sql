-- Earliest settlement time among staged funding rows that are new or carry a different rate.
SELECT min(s.funding_time) AS earliest
FROM staged AS s
LEFT JOIN funding AS f
  ON f.venue = s.venue AND f.symbol = s.symbol AND f.funding_time = s.funding_time
WHERE f.funding_time IS NULL OR f.funding_rate IS DISTINCT FROM s.funding_rate;
