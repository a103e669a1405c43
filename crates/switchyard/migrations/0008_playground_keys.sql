-- The dashboard playground's internal API key of each endpoint. Its secret is
-- thrown away: the playground route meters through it on the gateway path.
-- Keys named here are left out of the endpoint's key list.
CREATE TABLE playground_keys (
    endpoint_id TEXT PRIMARY KEY REFERENCES endpoints(id),
    key_id TEXT NOT NULL REFERENCES api_keys(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL
);

CREATE INDEX playground_keys_user ON playground_keys (user_id);

-- The playground's "last tests" are the newest usage records of these keys.
CREATE INDEX usage_records_key_time ON usage_records (api_key_id, created_at);
