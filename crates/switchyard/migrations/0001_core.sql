-- Core schema. One text for SQLite and PostgreSQL: only TEXT and BIGINT columns,
-- times are epoch milliseconds, money is integer micro-dollars (nano-dollars for unit prices).

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    is_admin BIGINT NOT NULL DEFAULT 0,
    balance_micro_usd BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE management_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    token_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL,
    source_type TEXT NOT NULL,
    base_model TEXT,
    hf_repo_url TEXT,
    provider TEXT NOT NULL,
    provider_endpoint_id TEXT,
    endpoint_url TEXT,
    endpoint_type TEXT NOT NULL,
    gpu_type TEXT,
    min_workers BIGINT NOT NULL DEFAULT 0,
    max_workers BIGINT NOT NULL DEFAULT 1,
    idle_timeout_seconds BIGINT NOT NULL DEFAULT 300,
    status TEXT NOT NULL,
    last_active_at BIGINT,
    error_message TEXT,
    upstream_base_url TEXT NOT NULL,
    upstream_api TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    upstream_key_encrypted TEXT,
    timeout_seconds BIGINT,
    price_input_nanos_per_1k BIGINT NOT NULL,
    price_output_nanos_per_1k BIGINT NOT NULL,
    price_compute_nanos_per_second BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE UNIQUE INDEX endpoints_user_name ON endpoints (user_id, name) WHERE deleted_at IS NULL;
CREATE INDEX endpoints_user ON endpoints (user_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL,
    rate_limit_per_minute BIGINT NOT NULL,
    rate_limit_per_day BIGINT NOT NULL,
    is_active BIGINT NOT NULL DEFAULT 1,
    is_test BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT,
    expires_at BIGINT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_endpoint ON api_keys (endpoint_id);

CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    api_key_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    method TEXT NOT NULL,
    status_code BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    usage_source TEXT NOT NULL,
    latency_ms BIGINT NOT NULL,
    ttft_ms BIGINT,
    compute_ms BIGINT NOT NULL,
    cost_micro_usd BIGINT NOT NULL,
    success BIGINT NOT NULL,
    error_code TEXT,
    streamed BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX usage_endpoint_time ON usage_records (endpoint_id, created_at);
CREATE INDEX usage_user_time ON usage_records (user_id, created_at);

CREATE TABLE credit_ledger (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL,
    amount_micro_usd BIGINT NOT NULL,
    balance_after_micro_usd BIGINT NOT NULL,
    request_id TEXT,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX credit_ledger_idempotency ON credit_ledger (kind, request_id);
CREATE INDEX credit_ledger_user_time ON credit_ledger (user_id, created_at);
