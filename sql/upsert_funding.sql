DELETE FROM funding AS f
USING staged AS s
WHERE f.venue = s.venue AND f.symbol = s.symbol AND f.funding_time = s.funding_time;

INSERT INTO funding BY NAME
SELECT venue, symbol, funding_time, funding_rate, mark_price FROM staged;
