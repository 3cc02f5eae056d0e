-- `hedgewatch status`: notifications not delivered yet, oldest first.
SELECT key, channel, state, events, attempts, last_error
FROM delivery_status
WHERE state <> 'delivered'
ORDER BY created_run, key, channel;
