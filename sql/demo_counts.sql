-- What the demo stored: candles, hedge and basket metric rows, delivered notifications.
SELECT (SELECT count(*) FROM candles) AS candles,
       (SELECT count(*) FROM hedge_metrics) AS hedge_rows,
       (SELECT count(*) FROM basket_metrics) AS basket_rows,
       (SELECT count(*) FROM deliveries WHERE delivered_at IS NOT NULL) AS delivered;
