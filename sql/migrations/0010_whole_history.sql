-- The settings the stored metric rows were computed with (name 'metrics'): a run or
-- `hedgewatch recompute` compares them with the config's and recomputes when they differ.
CREATE TABLE metrics_settings (
    name        VARCHAR     NOT NULL,
    settings    VARCHAR     NOT NULL,  -- JSON: windows, absorption_k, baseline_days, members, ...
    recorded_at TIMESTAMPTZ NOT NULL   -- UTC
);

-- Where imported candles came from, per series (a file format and name without its dates):
-- `hedgewatch import` refuses to put a second source into a series unless told to (--merge).
CREATE TABLE import_sources (
    venue       VARCHAR     NOT NULL,
    market      VARCHAR     NOT NULL,
    symbol      VARCHAR     NOT NULL,
    interval    VARCHAR     NOT NULL,
    source      VARCHAR     NOT NULL,  -- e.g. 'binance data archive', 'binance_spot_1h'
    imported_at TIMESTAMPTZ NOT NULL   -- UTC, first import of this source into the series
);
