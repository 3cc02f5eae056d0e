-- Which alerts fired during the LUNA/UST collapse?
SELECT ts, rule, subject, kind, round(value, 3) AS value, threshold
FROM alert_history
WHERE ts >= TIMESTAMPTZ '2022-05-07 00:00:00+00' AND ts < TIMESTAMPTZ '2022-05-14 00:00:00+00'
ORDER BY ts;
