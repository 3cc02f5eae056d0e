-- Consecutive breaching hours and the arm a firing alert breached on.
ALTER TABLE alert_state ADD COLUMN last_breach_at TIMESTAMPTZ; -- while pending: last hour of the breaching run
ALTER TABLE alert_state ADD COLUMN arm VARCHAR;                -- while firing: 'level' | 'z' | 'critical' | 'no_data'
