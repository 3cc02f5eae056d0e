-- One row per staged instrument: how stale its candles are at hour $at (UTC).
-- age_hours: hours since the newest stored candle (null: none at all); missing_hours: candles
-- missing in the $gap hours up to $at; fetch_errors: consecutive failed fetches, newest first.
WITH last AS (
    SELECT i.instrument, i.venue, i.market, i.symbol,
           max(c.open_time) AS last_open_time,
           count(c.open_time) FILTER (
               WHERE c.open_time > $at - to_hours(CAST($gap AS BIGINT))
           ) AS recent
    FROM instruments_staged AS i
    LEFT JOIN candles AS c
      ON c.venue = i.venue AND c.market = i.market AND c.symbol = i.symbol
     AND c.interval = i.interval AND c.open_time <= $at
    GROUP BY ALL
),
logged AS (
    SELECT f.venue, f.market, f.symbol, f.error,
           row_number() OVER (
               PARTITION BY f.venue, f.market, f.symbol ORDER BY f.end_time DESC
           ) AS n
    FROM fetch_log AS f
    WHERE f.dataset = 'candles'
),
streak AS (
    SELECT venue, market, symbol,
           coalesce(min(n) FILTER (WHERE error IS NULL), max(n) + 1) - 1 AS fetch_errors
    FROM logged GROUP BY ALL
)
SELECT l.instrument, l.venue, l.market, l.symbol, $at AS open_time, l.last_open_time,
       CAST(date_diff('hour', l.last_open_time, $at) AS DOUBLE) AS age_hours,
       CAST($gap - l.recent AS DOUBLE) AS missing_hours,
       CAST(coalesce(s.fetch_errors, 0) AS DOUBLE) AS fetch_errors
FROM last AS l
LEFT JOIN streak AS s USING (venue, market, symbol)
ORDER BY l.instrument;
