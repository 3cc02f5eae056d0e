-- Core tables. Times are UTC (TIMESTAMPTZ); candles are labelled by their open time.
-- No primary keys: upserts de-duplicate in the loader and delete-then-insert in one transaction,
-- which keeps the file small and bulk loads fast.

CREATE TABLE candles (
    venue        VARCHAR     NOT NULL,  -- e.g. 'binance'
    market       VARCHAR     NOT NULL,  -- 'spot' | 'perp'
    symbol       VARCHAR     NOT NULL,  -- the venue's own symbol, e.g. 'BTCUSDT'
    interval     VARCHAR     NOT NULL,  -- '1h'
    open_time    TIMESTAMPTZ NOT NULL,  -- candle open, UTC
    open         DOUBLE,                -- quote currency
    high         DOUBLE,
    low          DOUBLE,
    close        DOUBLE,
    volume       DOUBLE,                -- base units (contracts for perps)
    quote_volume DOUBLE,                -- quote units
    trades       BIGINT
);

CREATE TABLE funding (
    venue        VARCHAR     NOT NULL,
    symbol       VARCHAR     NOT NULL,
    funding_time TIMESTAMPTZ NOT NULL,  -- settlement time, UTC
    funding_rate DOUBLE      NOT NULL,  -- decimal per funding period (0.0001 = 0.01 %)
    mark_price   DOUBLE
);

CREATE TABLE pair_correlations (
    a            VARCHAR     NOT NULL,  -- instrument id from the config
    b            VARCHAR     NOT NULL,
    window_hours INTEGER     NOT NULL,
    open_time    TIMESTAMPTZ NOT NULL,  -- last hour inside the window (open-time label), UTC
    n_obs        INTEGER     NOT NULL,  -- pairwise-complete hourly returns in the window
    corr         DOUBLE                 -- Pearson; NULL below the coverage minimum
);

CREATE TABLE hedge_metrics (
    hedge         VARCHAR     NOT NULL,
    window_hours  INTEGER     NOT NULL,
    open_time     TIMESTAMPTZ NOT NULL,
    n_obs         INTEGER     NOT NULL,
    correlation   DOUBLE,  -- correlation of the signed leg returns; a working hedge is strongly negative
    beta          DOUBLE,  -- Cov(r_base, r_hedge) / Var(r_hedge)
    min_var_ratio DOUBLE,  -- hedge units per base unit that minimise the position's variance
    held_ratio    DOUBLE,  -- hedge units per base unit actually held (config)
    ratio_drift   DOUBLE,  -- min_var_ratio - held_ratio
    effectiveness DOUBLE   -- 1 - Var(hedged) / Var(unhedged), at the held ratio
);

CREATE TABLE basket_metrics (
    basket       VARCHAR     NOT NULL,
    window_hours INTEGER     NOT NULL,
    open_time    TIMESTAMPTZ NOT NULL,
    n_obs        INTEGER     NOT NULL,  -- fewest observations over the basket's pairs
    n_pairs      INTEGER     NOT NULL,  -- pairs with a correlation value
    avg_corr     DOUBLE                 -- mean pairwise Pearson correlation
);

CREATE TABLE alert_state (
    rule             VARCHAR NOT NULL,
    subject          VARCHAR NOT NULL,
    status           VARCHAR NOT NULL,  -- 'ok' | 'pending' | 'firing'
    since            TIMESTAMPTZ,
    pending_since    TIMESTAMPTZ,
    last_fired_at    TIMESTAMPTZ,
    last_resolved_at TIMESTAMPTZ,
    last_notified_at TIMESTAMPTZ,
    last_value       DOUBLE,
    episode          INTEGER NOT NULL,
    evaluated_at     TIMESTAMPTZ NOT NULL,  -- last hour this pair was evaluated for
    PRIMARY KEY (rule, subject)
);

CREATE TABLE alert_events (
    key       VARCHAR PRIMARY KEY,  -- idempotency key: rule|subject|episode|kind|hour
    rule      VARCHAR NOT NULL,
    subject   VARCHAR NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,  -- the hour the event belongs to (open-time label), UTC
    kind      VARCHAR NOT NULL,      -- 'firing' | 'resolved' | 'repeat'
    value     DOUBLE,
    threshold DOUBLE,
    severity  VARCHAR NOT NULL,
    episode   INTEGER NOT NULL,
    context   JSON
);

-- The outbox: one row per notification and channel; delivered_at is set once it went out.
CREATE TABLE deliveries (
    key          VARCHAR PRIMARY KEY,  -- digest key | channel
    channel      VARCHAR NOT NULL,
    event_keys   VARCHAR[] NOT NULL,
    created_run  VARCHAR NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   VARCHAR,
    delivered_at TIMESTAMPTZ
);

CREATE TABLE runs (
    run_id       VARCHAR PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,  -- wall clock, UTC
    finished_at  TIMESTAMPTZ,
    as_of        TIMESTAMPTZ NOT NULL,  -- the exchanges' time the run fetched up to
    status       VARCHAR NOT NULL,      -- 'running' | 'ok' | 'partial' | 'failed'
    summary      JSON
);

CREATE TABLE fetch_log (
    run_id     VARCHAR NOT NULL,
    venue      VARCHAR NOT NULL,
    market     VARCHAR NOT NULL,
    symbol     VARCHAR NOT NULL,
    dataset    VARCHAR NOT NULL,      -- 'candles' | 'funding'
    start_time TIMESTAMPTZ NOT NULL,
    end_time   TIMESTAMPTZ NOT NULL,
    rows       INTEGER NOT NULL,
    error      VARCHAR                -- NULL when the fetch succeeded
);

CREATE TABLE cursors (
    name  VARCHAR PRIMARY KEY,
    value TIMESTAMPTZ NOT NULL
);
