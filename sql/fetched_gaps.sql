-- Gaps of one candle series that overlap [$start, $end] (UTC).
SELECT first_missing, last_missing, missing_hours
FROM gaps
WHERE venue = $venue AND market = $market AND symbol = $symbol
  AND last_missing >= $start AND first_missing <= $end
ORDER BY first_missing;
