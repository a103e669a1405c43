//! The gateway's in-memory view of keys, endpoints and balances.
//!
//! The request path reads one immutable [`Snapshot`] through `ArcSwap` (no
//! lock, no database round trip). Every management write reloads the snapshot
//! from the store before it answers, so a revoked key is refused on the very
//! next request. Rate-limit counters and balances live in `Arc`s that survive
//! reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::domain::{ApiKey, Backend, Endpoint, EndpointStatus, Permission, UpstreamApi};
use crate::gateway::backend::{BackendRuntime, BackendSpec, BackendState};
use crate::gateway::balance::{Balancer, MAX_BACKENDS};
use crate::money::Tariff;
use crate::pricing::PriceTable;
use crate::ratelimit::KeyLimiter;
use crate::secrets::Secrets;
use crate::store::{Store, StoreError};

/// A key as the gateway checks it.
#[derive(Debug)]
pub struct KeyRuntime {
    pub key: ApiKey,
    pub limiter: Arc<KeyLimiter>,
}

impl KeyRuntime {
    /// Tells whether the key allows an operation (an empty list allows all).
    pub fn allows(&self, permission: Permission) -> bool {
        self.key.permissions.is_empty() || self.key.permissions.contains(&permission)
    }
}

/// An endpoint as the gateway forwards to it.
#[derive(Debug)]
pub struct EndpointRuntime {
    pub endpoint: Endpoint,
    /// The endpoint's own upstream first, then its extra backends; URLs
    /// parsed and credentials decrypted once at load time.
    pub backends: Vec<BackendRuntime>,
    /// The extra backends as stored (to tell whether a reload changed them).
    pub backend_rows: Vec<Backend>,
    pub balancer: Balancer,
    pub tariff: Tariff,
    pub metrics: EndpointMetrics,
}

impl EndpointRuntime {
    /// The endpoint's own upstream.
    pub fn primary(&self) -> &BackendRuntime {
        &self.backends[0]
    }
}

/// Metric handles of one endpoint, registered once so the request path
/// neither allocates label sets nor looks them up.
#[derive(Debug)]
pub struct EndpointMetrics {
    requests_2xx: metrics::Counter,
    requests_4xx: metrics::Counter,
    requests_5xx: metrics::Counter,
    pub duration: metrics::Histogram,
    pub upstream_duration: metrics::Histogram,
}

impl EndpointMetrics {
    fn register(endpoint_id: &str) -> Self {
        let counter = |class: &'static str| metrics::counter!("switchyard_requests_total", "endpoint" => endpoint_id.to_owned(), "status" => class);
        Self {
            requests_2xx: counter("2xx"),
            requests_4xx: counter("4xx"),
            requests_5xx: counter("5xx"),
            duration: metrics::histogram!("switchyard_request_duration_seconds", "endpoint" => endpoint_id.to_owned()),
            upstream_duration: metrics::histogram!("switchyard_upstream_duration_seconds", "endpoint" => endpoint_id.to_owned()),
        }
    }

    /// Counts one request that reached the upstream, by status class.
    pub fn count(&self, status: u16) {
        match status {
            200..=299 => self.requests_2xx.increment(1),
            400..=499 => self.requests_4xx.increment(1),
            _ => self.requests_5xx.increment(1),
        }
    }
}

/// A user's prepaid balance as the gateway debits it.
#[derive(Debug)]
pub struct Account {
    pub user_id: String,
    balance_micro_usd: AtomicI64,
}

impl Account {
    /// The current balance in micro-dollars, including charges not yet flushed.
    pub fn balance(&self) -> i64 {
        self.balance_micro_usd.load(Ordering::Acquire)
    }

    /// Debits (negative) or credits (positive) the in-memory balance.
    pub fn add(&self, micro_usd: i64) {
        self.balance_micro_usd
            .fetch_add(micro_usd, Ordering::AcqRel);
    }
}

/// Everything the gateway needs for one key.
#[derive(Debug, Clone)]
pub struct Route {
    pub key: Arc<KeyRuntime>,
    pub endpoint: Arc<EndpointRuntime>,
    pub account: Arc<Account>,
    /// The endpoint's fallback chain (live endpoints of the same user), in order.
    pub fallbacks: Arc<[Arc<EndpointRuntime>]>,
}

/// One immutable view of all routable keys.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub routes: HashMap<[u8; 32], Route>,
    pub accounts: HashMap<String, Arc<Account>>,
    pub endpoints: HashMap<String, Arc<EndpointRuntime>>,
    /// Key id → key hash, to find a route by key id (deployments' internal keys).
    pub by_key_id: HashMap<String, [u8; 32]>,
}

/// Owner of the current snapshot.
pub struct Registry {
    current: ArcSwap<Snapshot>,
    reload_lock: tokio::sync::Mutex<()>,
    store: Store,
    secrets: Arc<Secrets>,
    pricing: Arc<PriceTable>,
    markup_basis_points: i64,
}

impl Registry {
    /// Creates a registry and loads its first snapshot.
    pub async fn load(
        store: Store,
        secrets: Arc<Secrets>,
        pricing: Arc<PriceTable>,
        markup_basis_points: i64,
    ) -> Result<Self, StoreError> {
        let registry = Self {
            current: ArcSwap::from_pointee(Snapshot::default()),
            reload_lock: tokio::sync::Mutex::new(()),
            store,
            secrets,
            pricing,
            markup_basis_points,
        };
        registry.reload().await?;
        Ok(registry)
    }

    /// Finds the route for a key hash.
    pub fn route(&self, key_hash: &[u8; 32]) -> Option<Route> {
        self.current.load().routes.get(key_hash).cloned()
    }

    /// Every live endpoint's runtime (for backend health checks).
    pub fn endpoints(&self) -> Vec<Arc<EndpointRuntime>> {
        self.current.load().endpoints.values().cloned().collect()
    }

    /// One live endpoint's runtime.
    pub fn endpoint(&self, endpoint_id: &str) -> Option<Arc<EndpointRuntime>> {
        self.current.load().endpoints.get(endpoint_id).cloned()
    }

    /// Finds the route of a usable key by its id.
    pub fn route_by_key_id(&self, key_id: &str) -> Option<Route> {
        let snapshot = self.current.load();
        let hash = snapshot.by_key_id.get(key_id)?;
        snapshot.routes.get(hash).cloned()
    }

    /// The in-memory account of a user, if known.
    pub fn account(&self, user_id: &str) -> Option<Arc<Account>> {
        self.current.load().accounts.get(user_id).cloned()
    }

    /// Rebuilds the snapshot from the store, keeping live counters and balances.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _guard = self.reload_lock.lock().await;
        let previous = self.current.load_full();
        let users = self.store.list_users().await?;
        let endpoints = self.store.list_live_endpoints().await?;
        let keys = self.store.list_usable_keys().await?;
        let mut backends_of: HashMap<String, Vec<Backend>> = HashMap::new();
        for backend in self.store.list_live_backends().await? {
            backends_of
                .entry(backend.endpoint_id.clone())
                .or_default()
                .push(backend);
        }

        let accounts: HashMap<String, Arc<Account>> = users
            .into_iter()
            .map(|user| {
                let account = previous.accounts.get(&user.id).cloned().unwrap_or_else(|| {
                    Arc::new(Account {
                        user_id: user.id.clone(),
                        balance_micro_usd: AtomicI64::new(user.balance_micro_usd),
                    })
                });
                (user.id, account)
            })
            .collect();

        let previous_endpoints = &previous.endpoints;
        // Live figures follow a backend while its URL stays the same; a new
        // URL is a new server and starts with a closed breaker.
        let previous_states: HashMap<(&str, &str), &Arc<BackendState>> = previous_endpoints
            .values()
            .flat_map(|runtime| runtime.backends.iter())
            .map(|backend| {
                (
                    (backend.id.as_str(), backend.base_url.as_str()),
                    &backend.state,
                )
            })
            .collect();
        let mut endpoint_runtimes: HashMap<String, Arc<EndpointRuntime>> = HashMap::new();
        for endpoint in endpoints {
            let extra = backends_of.remove(&endpoint.id).unwrap_or_default();
            let reusable = previous_endpoints
                .get(endpoint.id.as_str())
                .filter(|runtime| runtime.endpoint == endpoint && runtime.backend_rows == extra)
                .map(Arc::clone);
            let runtime = match reusable {
                Some(runtime) => runtime,
                None => Arc::new(self.build_endpoint(endpoint, extra, &previous_states)),
            };
            endpoint_runtimes.insert(runtime.endpoint.id.clone(), runtime);
        }

        let previous_limiters: HashMap<&str, &Arc<KeyLimiter>> = previous
            .routes
            .values()
            .map(|route| (route.key.key.id.as_str(), &route.key.limiter))
            .collect();
        let mut routes = HashMap::with_capacity(keys.len());
        for key in keys {
            let (Some(endpoint), Some(account)) = (
                endpoint_runtimes.get(&key.endpoint_id),
                accounts.get(&key.user_id),
            ) else {
                continue;
            };
            let limiter = previous_limiters
                .get(key.id.as_str())
                .map(|limiter| Arc::clone(limiter))
                .unwrap_or_default();
            let fallbacks = fallbacks_of(endpoint, &endpoint_runtimes);
            routes.insert(
                key.key_hash,
                Route {
                    key: Arc::new(KeyRuntime { key, limiter }),
                    endpoint: Arc::clone(endpoint),
                    account: Arc::clone(account),
                    fallbacks,
                },
            );
        }
        let by_key_id = routes
            .iter()
            .map(|(hash, route)| (route.key.key.id.clone(), *hash))
            .collect();
        self.current.store(Arc::new(Snapshot {
            routes,
            accounts,
            endpoints: endpoint_runtimes,
            by_key_id,
        }));
        Ok(())
    }

    fn build_endpoint(
        &self,
        endpoint: Endpoint,
        extra: Vec<Backend>,
        previous: &HashMap<(&str, &str), &Arc<BackendState>>,
    ) -> EndpointRuntime {
        let decrypt = |what: &str, sealed: Option<&str>| -> Option<String> {
            sealed.and_then(|sealed| match self.secrets.decrypt(sealed) {
                Ok(secret) => Some(secret),
                Err(error) => {
                    tracing::error!(endpoint_id = %endpoint.id, %error, "cannot decrypt the upstream {what}");
                    None
                }
            })
        };
        let headers_of = |sealed: Option<&str>| -> Vec<(String, String)> {
            decrypt("headers", sealed)
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default()
        };
        let state_of =
            |id: &str, base_url: &str| previous.get(&(id, base_url)).map(|state| Arc::clone(state));
        let mut backends = Vec::with_capacity(1 + extra.len());
        let key = decrypt("credential", endpoint.upstream_key_encrypted.as_deref());
        let headers = headers_of(endpoint.upstream_headers_encrypted.as_deref());
        backends.push(BackendRuntime::build(
            &BackendSpec {
                id: &endpoint.id,
                endpoint_id: &endpoint.id,
                version: endpoint.routing.version(),
                weight: 100,
                api: endpoint.upstream_api,
                base_url: &endpoint.upstream_base_url,
                model: &endpoint.upstream_model,
                api_version: endpoint.routing.api_version.as_deref(),
                api_key: key.as_deref(),
                headers: &headers,
            },
            state_of(&endpoint.id, &endpoint.upstream_base_url),
        ));
        for backend in extra.iter().take(MAX_BACKENDS - 1) {
            let key = decrypt("credential", backend.upstream_key_encrypted.as_deref());
            let headers = headers_of(backend.upstream_headers_encrypted.as_deref());
            backends.push(BackendRuntime::build(
                &BackendSpec {
                    id: &backend.id,
                    endpoint_id: &endpoint.id,
                    version: &backend.version,
                    weight: u32::try_from(backend.weight).unwrap_or(1),
                    api: backend.upstream_api,
                    base_url: &backend.upstream_base_url,
                    model: &backend.upstream_model,
                    api_version: backend.upstream_api_version.as_deref(),
                    api_key: key.as_deref(),
                    headers: &headers,
                },
                state_of(&backend.id, &backend.upstream_base_url),
            ));
        }
        let balancer = Balancer::new(
            endpoint.routing.strategy,
            endpoint.routing.traffic.clone(),
            &backends,
        );
        let compute = endpoint
            .pricing
            .compute_nanos_per_second
            .unwrap_or_else(|| {
                endpoint
                    .gpu_type
                    .as_deref()
                    .and_then(|gpu| {
                        self.pricing
                            .compute_nanos_per_second(&endpoint.provider, gpu)
                    })
                    .unwrap_or(0)
            });
        let (input, output) = match endpoint.modality {
            crate::domain::Modality::Llm | crate::domain::Modality::Embedding => (
                endpoint.pricing.input_nanos_per_1k,
                endpoint.pricing.output_nanos_per_1k,
            ),
            _ => (0, 0),
        };
        EndpointRuntime {
            metrics: EndpointMetrics::register(&endpoint.id),
            backends,
            backend_rows: extra,
            balancer,
            tariff: Tariff {
                compute_nanos_per_second: compute,
                input_nanos_per_1k: input,
                output_nanos_per_1k: output,
                markup_basis_points: self.markup_basis_points,
            },
            endpoint,
        }
    }
}

/// The live fallback endpoints of an endpoint (same user, not itself), in
/// order: only those that take requests now (active or idle, as the gateway's
/// own status check) and speak a protocol the attempt loop can send to (not
/// Replicate, which is served through predictions).
fn fallbacks_of(
    endpoint: &EndpointRuntime,
    runtimes: &HashMap<String, Arc<EndpointRuntime>>,
) -> Arc<[Arc<EndpointRuntime>]> {
    endpoint
        .endpoint
        .routing
        .fallback_endpoint_ids
        .iter()
        .filter(|id| **id != endpoint.endpoint.id)
        .filter_map(|id| runtimes.get(id))
        .filter(|fallback| fallback.endpoint.user_id == endpoint.endpoint.user_id)
        .filter(|fallback| {
            matches!(
                fallback.endpoint.status,
                EndpointStatus::Active | EndpointStatus::Idle
            ) && fallback.endpoint.upstream_api != UpstreamApi::Replicate
        })
        .cloned()
        .collect()
}
