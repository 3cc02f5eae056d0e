-- The newest hour (UTC) with hedge or basket metrics.
SELECT max(open_time) AS latest
FROM (SELECT open_time FROM hedge_metrics UNION ALL SELECT open_time FROM basket_metrics);
