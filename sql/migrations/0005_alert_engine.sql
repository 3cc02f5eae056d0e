-- Alert engine: severity and no-data on the state, outbox attempts in flight, silences.

ALTER TABLE alert_state ADD COLUMN severity VARCHAR;          -- while firing: the severity last announced
ALTER TABLE alert_state ADD COLUMN no_data_since TIMESTAMPTZ; -- set while the rule has no data for the subject
ALTER TABLE alert_state ADD COLUMN clearing_since TIMESTAMPTZ; -- while firing: first hour of the clear run (keep-firing)

ALTER TABLE alert_events ADD COLUMN silenced BOOLEAN DEFAULT false; -- recorded, not delivered

-- 'sending' is committed before a channel is called: a row found in it later was interrupted.
ALTER TABLE deliveries ADD COLUMN status VARCHAR DEFAULT 'queued';  -- 'queued' | 'sending' | 'delivered'
ALTER TABLE deliveries ADD COLUMN sending_since TIMESTAMPTZ;
ALTER TABLE deliveries ADD COLUMN interrupted INTEGER DEFAULT 0;    -- attempts that died mid-send
UPDATE deliveries SET status = 'delivered' WHERE delivered_at IS NOT NULL;

CREATE TABLE alert_silences (
    rule       VARCHAR     NOT NULL,  -- rule name or '*'
    subject    VARCHAR     NOT NULL,  -- subject or '*'
    until      TIMESTAMPTZ NOT NULL,  -- events up to this hour are recorded but not delivered
    reason     VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (rule, subject)
);
