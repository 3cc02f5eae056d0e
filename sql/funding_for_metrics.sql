-- Funding payments from $since on (settlement time, UTC).
SELECT venue, symbol, funding_time, funding_rate
FROM funding
WHERE funding_time >= $since
ORDER BY venue, symbol, funding_time;
