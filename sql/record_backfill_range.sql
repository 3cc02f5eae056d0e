-- A backfill chunk stored (in the same transaction as its rows).
INSERT INTO backfill_ranges
VALUES ($venue, $market, $symbol, $interval, $dataset, $start, $end, $rows, $at);
