-- Stored basket metrics in [$since - baseline, $since): the trailing baseline of the next hours.
SELECT basket, window_hours, open_time, avg_corr, absorption_ratio
FROM basket_metrics
WHERE open_time >= $start AND open_time < $since
ORDER BY basket, window_hours, open_time;
