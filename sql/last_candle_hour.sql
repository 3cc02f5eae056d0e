-- The newest stored candle's open time (UTC).
SELECT max(open_time) FROM candles;
