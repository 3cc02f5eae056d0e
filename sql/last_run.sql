-- The newest run: when it started, how it ended and its exchange time.
SELECT started_at, status, as_of FROM runs ORDER BY started_at DESC LIMIT 1;
