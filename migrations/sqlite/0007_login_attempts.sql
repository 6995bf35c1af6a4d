-- Sign-in attempts are recorded before the password is checked, per (email, client address):
-- a row counts as a failure until its attempt succeeds. The id is a ULID, so attempts made in
-- the same millisecond still have an order. Replaces login_failures (per email only).
CREATE TABLE login_attempts (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    client       TEXT NOT NULL,
    attempted_at BIGINT NOT NULL
);
CREATE INDEX login_attempts_pair_idx ON login_attempts (email, client, id);
CREATE INDEX login_attempts_client_idx ON login_attempts (client, id);
CREATE INDEX login_attempts_at_idx ON login_attempts (attempted_at);
DROP TABLE login_failures;
