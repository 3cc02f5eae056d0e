SELECT venue, symbol, max(funding_time) AS last_funding_time
FROM funding
GROUP BY ALL;
