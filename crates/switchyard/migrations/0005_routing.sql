-- Several backends per endpoint, traffic split by version, balancing strategy and fallbacks.
-- `routing` is the endpoint's `Routing` as JSON (version label of its own upstream, strategy,
-- traffic weights in basis points, fallback endpoint ids, Azure api-version).

ALTER TABLE endpoints ADD COLUMN routing TEXT NOT NULL DEFAULT '{}';

CREATE TABLE endpoint_backends (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id),
    version TEXT NOT NULL,
    weight BIGINT NOT NULL DEFAULT 100,
    upstream_base_url TEXT NOT NULL,
    upstream_api TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    upstream_api_version TEXT,
    upstream_key_encrypted TEXT,
    upstream_headers_encrypted TEXT,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX endpoint_backends_endpoint ON endpoint_backends (endpoint_id);

ALTER TABLE usage_records ADD COLUMN backend_id TEXT;
ALTER TABLE usage_records ADD COLUMN backend_version TEXT;
ALTER TABLE usage_records ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
CREATE INDEX usage_records_endpoint_version ON usage_records (endpoint_id, backend_version, created_at);
