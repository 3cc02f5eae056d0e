-- Silences set from the CLI, soonest end first.
SELECT rule, subject, until, reason FROM alert_silences ORDER BY until;
