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
pub async fn reconcile_once(deployer: &Deployer) -> Result<usize, crate::store::StoreError> {
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
        if let Some(plan) = job
            .plan
            .as_deref()
            .and_then(|text| serde_json::from_str::<super::flow::Plan>(text).ok())
        {
            if let Some(previous) = plan.previous_resource {
                expected.insert((previous.provider.as_str().to_owned(), previous.name));
            }
        }
    }
    let mut deleted = 0;
    for kind in ProviderKind::ALL {
        if *kind == ProviderKind::External || !deployer.providers.is_available(*kind) {
            continue;
        }
        let Some(provisioner) = deployer.providers.get(*kind) else {
            continue;
        };
        let managed = match provisioner.list_managed().await {
            Ok(managed) => managed,
            Err(error) => {
                tracing::warn!(provider = %kind, %error, "cannot list provider resources");
                continue;
            }
        };
        for resource in managed {
            if expected.contains(&(kind.as_str().to_owned(), resource.name.clone())) {
                continue;
            }
            tracing::warn!(provider = %kind, resource = %resource.id, name = %resource.name, "deleting an orphaned provider resource");
            if super::flow::delete_resource(deployer, &resource).await {
                deleted += 1;
                metrics::counter!("switchyard_orphans_deleted_total", "provider" => kind.as_str())
                    .increment(1);
            }
        }
    }
    Ok(deleted)
}
