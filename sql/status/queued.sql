-- `hedgewatch status`: notifications not delivered yet (queued, retrying, dead), oldest first.
SELECT key, channel, state, events, attempts, runs, last_error
FROM delivery_status
WHERE state <> 'delivered'
ORDER BY created_run, key, channel;
