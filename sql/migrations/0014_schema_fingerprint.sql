-- The fingerprint of the schema a store was last brought to: every migration's name and every
-- public view's text (see Store.migrate). Opening a store whose fingerprint matches the installed
-- package's is one query; any other opening applies what is pending and refreshes the views.
CREATE TABLE schema_fingerprint (
    fingerprint VARCHAR NOT NULL
);
