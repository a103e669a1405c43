-- Dashboard sign-in sessions. Only the keyed hash of the session cookie is stored;
-- a session lives while the management token it was opened with is not revoked.
CREATE TABLE dashboard_sessions (
    session_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX dashboard_sessions_user ON dashboard_sessions (user_id);
