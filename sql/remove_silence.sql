-- Remove the CLI silence of $rule for $subject; returns the rows removed.
DELETE FROM alert_silences WHERE rule = $rule AND subject = $subject RETURNING rule;
