-- Outbound webhooks: host applications receive the same events as the event stream.

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    url TEXT NOT NULL,
    secret_encrypted TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX webhooks_user ON webhooks (user_id);
