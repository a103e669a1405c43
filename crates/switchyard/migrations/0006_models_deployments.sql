-- API-based (and self-hosted) models and their deployments. One text for SQLite and
-- PostgreSQL: only TEXT and BIGINT columns, times are epoch milliseconds.

CREATE TABLE models (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    model_type TEXT NOT NULL,
    deployment_type TEXT NOT NULL,
    provider TEXT NOT NULL,
    api_endpoint TEXT NOT NULL,
    model_identifier TEXT NOT NULL,
    -- The whole api_config JSON, AES-256-GCM encrypted; never returned.
    api_config_encrypted TEXT NOT NULL,
    -- The names of the api_config entries (JSON array), shown instead of the values.
    api_config_keys TEXT NOT NULL,
    scope TEXT NOT NULL,
    is_active BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX models_user_name ON models (user_id, name) WHERE deleted_at IS NULL;
CREATE INDEX models_scope ON models (scope, created_at) WHERE deleted_at IS NULL;

CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    model_id TEXT NOT NULL REFERENCES models(id),
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    -- The internal API key of the endpoint that meters inference calls.
    key_id TEXT NOT NULL REFERENCES api_keys(id),
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX deployments_user_name ON deployments (user_id, name) WHERE deleted_at IS NULL;
CREATE INDEX deployments_user ON deployments (user_id, created_at);
CREATE INDEX deployments_model ON deployments (model_id);
