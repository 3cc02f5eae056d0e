-- Record (or replace) a silence of $rule for $subject until $until (UTC).
DELETE FROM alert_silences WHERE rule = $rule AND subject = $subject;
INSERT INTO alert_silences VALUES ($rule, $subject, $until, $reason, now());
