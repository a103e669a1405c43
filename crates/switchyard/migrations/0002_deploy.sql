-- Control plane: provider resources of endpoints, durable deploy jobs.

ALTER TABLE endpoints ADD COLUMN provider_resource TEXT;
ALTER TABLE endpoints ADD COLUMN upstream_headers_encrypted TEXT;
ALTER TABLE endpoints ADD COLUMN training_job_id TEXT;
CREATE UNIQUE INDEX endpoints_training_job ON endpoints (user_id, training_job_id);

CREATE TABLE deploy_jobs (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    request TEXT NOT NULL,
    plan TEXT,
    resource TEXT,
    attempts TEXT NOT NULL DEFAULT '[]',
    key_id TEXT,
    key_secret_encrypted TEXT,
    error TEXT,
    lease_owner TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX deploy_jobs_state ON deploy_jobs (state);
CREATE INDEX deploy_jobs_endpoint ON deploy_jobs (endpoint_id, created_at);
