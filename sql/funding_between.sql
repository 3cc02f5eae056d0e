-- Every stored funding payment settled in [$start, $end] (UTC).
SELECT * FROM funding WHERE funding_time >= $start AND funding_time <= $end;
