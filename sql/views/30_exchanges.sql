-- Backfill coverage per series: how many ranges were fetched and the span they cover.
CREATE OR REPLACE VIEW backfill_coverage AS
SELECT venue, market, symbol, interval, dataset,
       count(*) AS ranges,
       min(start_time) AS first_start,
       max(end_time) AS last_end,
       sum(rows) AS rows,
       max(completed_at) AS last_completed_at
FROM backfill_ranges
GROUP BY ALL;
