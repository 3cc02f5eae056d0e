-- Time ranges a backfill has fetched and stored, so an interrupted backfill resumes where it
-- stopped. A range is recorded in the same transaction as its candles.
CREATE TABLE backfill_ranges (
    venue        VARCHAR     NOT NULL,
    market       VARCHAR     NOT NULL,
    symbol       VARCHAR     NOT NULL,
    interval     VARCHAR     NOT NULL,  -- '1h'; funding ranges use '-'
    dataset      VARCHAR     NOT NULL,  -- 'candles' | 'funding'
    start_time   TIMESTAMPTZ NOT NULL,  -- inclusive
    end_time     TIMESTAMPTZ NOT NULL,  -- exclusive
    rows         INTEGER     NOT NULL,  -- rows the venue returned for the range
    completed_at TIMESTAMPTZ NOT NULL
);
