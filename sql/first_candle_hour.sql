-- The oldest stored candle's open time (UTC).
SELECT min(open_time) FROM candles;
