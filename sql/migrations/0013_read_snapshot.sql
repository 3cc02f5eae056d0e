-- The read snapshot is published incrementally (Parquet partitions per table and month or day,
-- see src/hedgewatch/storage/snapshot.py): writes of the partitioned tables record the time
-- range they touched, in their own transaction, and the next publication rewrites only the
-- partitions those ranges cover.
CREATE TABLE snapshot_dirty (
    table_name VARCHAR     NOT NULL,  -- 'candles', 'hedge_metrics', ...
    since      TIMESTAMPTZ NOT NULL,  -- first row time touched, UTC
    until      TIMESTAMPTZ            -- last row time touched (inclusive); NULL: everything after
);

-- The generation the read snapshot shows (one row; the snapshot's own copy says which it is).
CREATE TABLE snapshot_published (
    generation   INTEGER     NOT NULL,
    published_at TIMESTAMPTZ NOT NULL,  -- UTC
    data_path    VARCHAR     NOT NULL   -- the generation's folder of Parquet files
);
