-- At most one deploy or redeploy job runs per endpoint (two concurrent
-- redeploys would each create a provider resource).
CREATE UNIQUE INDEX deploy_jobs_one_active ON deploy_jobs (endpoint_id)
    WHERE state IN ('queued', 'running') AND kind IN ('deploy', 'redeploy');
