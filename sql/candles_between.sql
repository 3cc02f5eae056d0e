-- Every stored candle with open time in [$start, $end] (UTC).
SELECT * FROM candles WHERE open_time >= $start AND open_time <= $end;
