-- Every range a backfill completed, oldest first.
SELECT venue, market, symbol, interval, dataset, start_time, end_time
FROM backfill_ranges
ORDER BY start_time;
