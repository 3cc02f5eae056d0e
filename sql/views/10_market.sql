-- Public views for ad-hoc SQL. Times are UTC; hourly rows are labelled by candle open time.
-- Recreated on every start, so they always match the installed version.

-- Hourly log returns per series, only between two consecutive candles (never across a gap).
CREATE OR REPLACE VIEW returns AS
WITH ordered AS (
    SELECT venue, market, symbol, interval, open_time, close,
           lag(open_time) OVER w AS prev_open_time,
           lag(close) OVER w AS prev_close
    FROM candles
    WINDOW w AS (PARTITION BY venue, market, symbol, interval ORDER BY open_time)
)
SELECT venue, market, symbol, interval, open_time,
       ln(close / prev_close) AS log_return
FROM ordered
WHERE prev_open_time = open_time - INTERVAL 1 HOUR AND close > 0 AND prev_close > 0;

-- Missing hourly candles inside each series' stored range: one row per gap.
CREATE OR REPLACE VIEW gaps AS
WITH ordered AS (
    SELECT venue, market, symbol, interval, open_time,
           lag(open_time) OVER (PARTITION BY venue, market, symbol, interval ORDER BY open_time)
               AS prev_open_time
    FROM candles
)
SELECT venue, market, symbol, interval,
       prev_open_time + INTERVAL 1 HOUR AS first_missing,
       open_time - INTERVAL 1 HOUR AS last_missing,
       CAST(date_diff('hour', prev_open_time, open_time) - 1 AS INTEGER) AS missing_hours
FROM ordered
WHERE open_time - prev_open_time > INTERVAL 1 HOUR;

-- Stored range and freshness per series.
CREATE OR REPLACE VIEW series AS
SELECT venue, market, symbol, interval,
       min(open_time) AS first_open_time,
       max(open_time) AS last_open_time,
       count(*) AS candles
FROM candles
GROUP BY ALL;

-- The newest value of every pair correlation and window.
CREATE OR REPLACE VIEW latest_correlations AS
SELECT *
FROM pair_correlations
QUALIFY row_number() OVER (PARTITION BY a, b, window_hours ORDER BY open_time DESC) = 1;

-- The newest metrics of every hedge and window, with the alert status of its rules.
CREATE OR REPLACE VIEW hedge_status AS
WITH latest AS (
    SELECT *
    FROM hedge_metrics
    QUALIFY row_number() OVER (PARTITION BY hedge, window_hours ORDER BY open_time DESC) = 1
),
alerting AS (
    SELECT subject, string_agg(rule || '=' || status, ', ' ORDER BY rule) AS alert_status
    FROM alert_state
    GROUP BY subject
)
SELECT latest.*, coalesce(alerting.alert_status, 'no rules') AS alert_status
FROM latest
LEFT JOIN alerting ON alerting.subject = latest.hedge;

-- Every alert event, newest first, with whether each channel got it.
CREATE OR REPLACE VIEW alert_history AS
SELECT e.ts, e.rule, e.subject, e.kind, e.severity, e.value, e.threshold, e.episode,
       count(d.key) AS notifications,
       count(d.delivered_at) AS delivered
FROM alert_events AS e
LEFT JOIN deliveries AS d ON list_contains(d.event_keys, e.key)
GROUP BY ALL
ORDER BY e.ts DESC, e.rule, e.subject;
