-- Which notifications have not gone out yet, and why?
SELECT channel, state, attempts, last_error, events, key
FROM delivery_status
WHERE state <> 'delivered'
ORDER BY channel, key;
