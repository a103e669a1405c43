//! The reconcile loop: every provider resource named `sy-…` must belong to a
//! live endpoint or to a running job; anything else is an orphan (left by a
//! crash between steps, a failed delete, or a terminated endpoint) and is deleted.

use std::collections::HashSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Deployer;
use crate::providers::{ProviderKind, ProviderResource};

/// Runs [`reconcile_once`] every `reconcile_interval` until shutdown.
pub async fn run(deployer: Arc<Deployer>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(deployer.settings.reconcile_interval) => {}
        }
        match reconcile_once(&deployer).await {
            Ok(deleted) if deleted > 0 => {
                tracing::info!(deleted, "orphaned provider resources deleted")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reconcile failed"),
        }
    }
}

/// One pass over every configured provider; returns how many orphans were deleted.
///
/// The providers are listed first and the store is read after, so a
/// resource created during the listing is always accounted for; every name
/// a running job may still create is expected, claimed or not; and each
/// candidate is checked against the store again just before it is deleted.
pub async fn reconcile_once(deployer: &Deployer) -> Result<usize, crate::store::StoreError> {
    let mut listed: Vec<ProviderResource> = Vec::new();
    for kind in ProviderKind::ALL {
        if *kind == ProviderKind::External || !deployer.providers.is_available(*kind) {
            continue;
        }
        let Some(provisioner) = deployer.providers.get(*kind) else {
            continue;
        };
        match provisioner.list_managed().await {
            Ok(managed) => listed.extend(managed),
            Err(error) => {
                tracing::warn!(provider = %kind, %error, "cannot list provider resources")
            }
        }
    }
    if listed.is_empty() {
        return Ok(0);
    }
    let mut expected = expected_names(deployer).await?;
    let mut deleted = 0;
    for resource in listed {
        let key = (resource.provider.as_str().to_owned(), resource.name.clone());
        if expected.contains(&key) {
            continue;
        }
        // A job may have started since the first read: look again.
        expected = expected_names(deployer).await?;
        if expected.contains(&key) {
            continue;
        }
        tracing::warn!(provider = %resource.provider, resource = %resource.id, name = %resource.name, "deleting an orphaned provider resource");
        if super::flow::delete_resource(deployer, &resource).await {
            deleted += 1;
            metrics::counter!("switchyard_orphans_deleted_total", "provider" => resource.provider.as_str()).increment(1);
        }
    }
    Ok(deleted)
}

/// Every (provider, name) a live endpoint or an unfinished job accounts for.
async fn expected_names(
    deployer: &Deployer,
) -> Result<HashSet<(String, String)>, crate::store::StoreError> {
    let mut expected: HashSet<(String, String)> = HashSet::new();
    for (endpoint, deleted) in deployer.store.list_all_endpoints().await? {
        if deleted {
            continue;
        }
        if let Some(resource) = endpoint
            .provider_resource
            .as_deref()
            .and_then(|text| serde_json::from_str::<ProviderResource>(text).ok())
        {
            expected.insert((resource.provider.as_str().to_owned(), resource.name));
        }
    }
    for job in deployer.store.unfinished_jobs().await? {
        let plan = job
            .plan
            .as_deref()
            .and_then(|text| serde_json::from_str::<super::flow::Plan>(text).ok())
            .unwrap_or_default();
        // Any option of the job may be created next, on any provider.
        for index in 0..=plan.options.len() {
            let name = super::flow::job_resource_name(&job.id, index);
            for kind in ProviderKind::ALL {
                expected.insert((kind.as_str().to_owned(), name.clone()));
            }
        }
        if let Some(previous) = plan.previous_resource {
            expected.insert((previous.provider.as_str().to_owned(), previous.name));
        }
        if let Some(value) = job
            .resource
            .as_deref()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        {
            if let (Some(provider), Some(name)) = (
                value.get("provider").and_then(|v| v.as_str()),
                value.get("name").and_then(|v| v.as_str()),
            ) {
                expected.insert((provider.to_owned(), name.to_owned()));
            }
        }
    }
    Ok(expected)
}
