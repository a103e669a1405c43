//! Picks one of an endpoint's backends for an attempt.
//!
//! 1. Candidates: backends not yet tried by this request, marked healthy by
//!    the active health check, whose circuit breaker lets a call through.
//! 2. Traffic split: when the endpoint has one (`{"1.0": 9500, "1.1": 500}`
//!    in basis points), a version is drawn by weight among the versions that
//!    still have a candidate, so an open canary's share goes to the others.
//!    Backends whose version is not in the split are used only when no
//!    version of the split has a candidate.
//! 3. Strategy among the candidates of that version: `round_robin` (a shared
//!    counter), `least_connections` (fewest requests in flight, ties rotate),
//!    `latency` (lowest EWMA of the time to the response head × (in flight +
//!    1); a backend without a sample is tried first), `weighted` (random by
//!    backend weight).
//! 4. The chosen backend's breaker is then claimed (an open breaker past its
//!    period admits exactly one half-open probe); losing that race excludes
//!    it and the pick repeats.
//!
//! All state is atomics: no lock, no allocation (candidate sets are `u64`
//! bit masks, so an endpoint has at most 64 backends).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::backend::{BackendRuntime, BreakerSettings, Permit};
use crate::domain::BalanceStrategy;

/// The most backends one endpoint may have.
pub const MAX_BACKENDS: usize = 64;

/// How one endpoint spreads requests.
#[derive(Debug)]
pub struct Balancer {
    pub strategy: BalanceStrategy,
    /// Traffic split: (version, share in basis points).
    pub split: Vec<(String, u32)>,
    /// For each backend, the index of its version in `split`.
    version_index: Vec<Option<usize>>,
    counter: AtomicUsize,
}

impl Balancer {
    /// A balancer for these backends.
    pub fn new(
        strategy: BalanceStrategy,
        split: Vec<(String, u32)>,
        backends: &[BackendRuntime],
    ) -> Self {
        let version_index = backends
            .iter()
            .map(|backend| {
                split
                    .iter()
                    .position(|(version, _)| *version == backend.version)
            })
            .collect();
        Self {
            strategy,
            split,
            version_index,
            counter: AtomicUsize::new(0),
        }
    }

    /// Picks a backend not in `excluded` (a bit per backend index) and claims
    /// its breaker; `None` when every backend is out.
    pub fn pick(
        &self,
        backends: &[BackendRuntime],
        mut excluded: u64,
        now_ms: u64,
        settings: &BreakerSettings,
    ) -> Option<(usize, Permit)> {
        for _ in 0..backends.len() {
            let mut candidates = 0u64;
            for (index, backend) in backends.iter().enumerate().take(MAX_BACKENDS) {
                let state = &backend.state;
                if excluded & (1 << index) == 0
                    && state.is_healthy()
                    && state.breaker.would_allow(now_ms, settings)
                {
                    candidates |= 1 << index;
                }
            }
            if candidates == 0 {
                return None;
            }
            let candidates = self.restrict_to_version(candidates);
            let chosen = self.choose(backends, candidates);
            match backends[chosen].state.acquire(now_ms, settings) {
                Permit::Denied => excluded |= 1 << chosen,
                permit => return Some((chosen, permit)),
            }
        }
        None
    }

    /// Draws a version of the split among those with candidates.
    fn restrict_to_version(&self, candidates: u64) -> u64 {
        if self.split.is_empty() {
            return candidates;
        }
        let mut present = [0u64; 8];
        let mut total = 0u64;
        for (version, (_, share)) in self.split.iter().enumerate().take(present.len()) {
            let mask = self.version_mask(version) & candidates;
            if mask != 0 && *share > 0 {
                present[version] = mask;
                total += u64::from(*share);
            }
        }
        if total == 0 {
            return candidates;
        }
        let mut draw = rand::random::<u64>() % total;
        for (version, (_, share)) in self.split.iter().enumerate().take(present.len()) {
            if present[version] == 0 {
                continue;
            }
            let share = u64::from(*share);
            if draw < share {
                return present[version];
            }
            draw -= share;
        }
        candidates
    }

    fn version_mask(&self, version: usize) -> u64 {
        self.version_index
            .iter()
            .enumerate()
            .filter(|(_, index)| **index == Some(version))
            .fold(0, |mask, (backend, _)| mask | (1 << backend))
    }

    fn choose(&self, backends: &[BackendRuntime], candidates: u64) -> usize {
        let count = candidates.count_ones() as usize;
        if count == 1 {
            return candidates.trailing_zeros() as usize;
        }
        let turn = self.counter.fetch_add(1, Ordering::Relaxed);
        match self.strategy {
            BalanceStrategy::RoundRobin => nth_bit(candidates, turn % count),
            BalanceStrategy::LeastConnections => lowest(candidates, turn % count, |index| {
                u64::from(backends[index].state.in_flight())
            }),
            BalanceStrategy::Latency => lowest(candidates, turn % count, |index| {
                let state = &backends[index].state;
                state
                    .ewma_micros()
                    .saturating_mul(u64::from(state.in_flight()) + 1)
            }),
            BalanceStrategy::Weighted => {
                let total: u64 = bits(candidates)
                    .map(|index| u64::from(backends[index].weight))
                    .sum();
                let mut draw = rand::random::<u64>() % total.max(1);
                for index in bits(candidates) {
                    let weight = u64::from(backends[index].weight);
                    if draw < weight {
                        return index;
                    }
                    draw -= weight;
                }
                candidates.trailing_zeros() as usize
            }
        }
    }
}

fn bits(mask: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |index| mask & (1 << index) != 0)
}

fn nth_bit(mask: u64, n: usize) -> usize {
    bits(mask).nth(n).unwrap_or(0)
}

/// The candidate with the lowest score; ties go to the first at or after
/// position `start` (so equal backends take turns).
fn lowest(mask: u64, start: usize, score: impl Fn(usize) -> u64) -> usize {
    let candidates = bits(mask).collect::<index_set::Set>();
    let count = candidates.len;
    let mut best = candidates.items[start % count];
    let mut best_score = score(best);
    for offset in 1..count {
        let index = candidates.items[(start + offset) % count];
        let value = score(index);
        if value < best_score {
            best = index;
            best_score = value;
        }
    }
    best
}

mod index_set {
    //! A fixed-capacity set of backend indices (no allocation).
    use super::MAX_BACKENDS;

    pub struct Set {
        pub items: [usize; MAX_BACKENDS],
        pub len: usize,
    }

    impl FromIterator<usize> for Set {
        fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
            let mut set = Set {
                items: [0; MAX_BACKENDS],
                len: 0,
            };
            for item in iter.into_iter().take(MAX_BACKENDS) {
                set.items[set.len] = item;
                set.len += 1;
            }
            set
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::UpstreamApi;
    use crate::gateway::backend::BackendSpec;

    fn backends(specs: &[(&str, &str, u32)]) -> Vec<BackendRuntime> {
        specs
            .iter()
            .map(|(id, version, weight)| {
                BackendRuntime::build(
                    &BackendSpec {
                        id,
                        endpoint_id: "e",
                        version,
                        weight: *weight,
                        api: UpstreamApi::OpenAi,
                        base_url: "http://127.0.0.1:9/v1",
                        model: "m",
                        api_version: None,
                        api_key: None,
                        headers: &[],
                    },
                    None,
                )
            })
            .collect()
    }

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
        }
    }

    fn counts(balancer: &Balancer, backends: &[BackendRuntime], rounds: usize) -> Vec<usize> {
        let mut counts = vec![0; backends.len()];
        for _ in 0..rounds {
            let (index, permit) = balancer.pick(backends, 0, 1_000, &settings()).unwrap();
            assert_eq!(permit, Permit::Allowed);
            counts[index] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_takes_turns_and_skips_open_breakers() {
        let backends = backends(&[("a", "1.0", 1), ("b", "1.0", 1), ("c", "1.0", 1)]);
        let balancer = Balancer::new(BalanceStrategy::RoundRobin, Vec::new(), &backends);
        assert_eq!(counts(&balancer, &backends, 300), vec![100, 100, 100]);
        backends[1].state.failed(1_000, &settings());
        backends[1].state.failed(1_000, &settings());
        let after = counts(&balancer, &backends, 200);
        assert_eq!(after[1], 0);
        assert_eq!(after[0] + after[2], 200);
        // Excluding the remaining two leaves nothing.
        assert!(balancer
            .pick(&backends, 0b101, 1_000, &settings())
            .is_none());
    }

    #[test]
    fn least_connections_prefers_idle_backends() {
        let backends = backends(&[("a", "1.0", 1), ("b", "1.0", 1)]);
        let balancer = Balancer::new(BalanceStrategy::LeastConnections, Vec::new(), &backends);
        let _busy = [backends[0].state.begin(), backends[0].state.begin()];
        assert_eq!(counts(&balancer, &backends, 50), vec![0, 50]);
    }

    #[test]
    fn latency_prefers_the_faster_backend_and_explores_new_ones() {
        let backends = backends(&[("a", "1.0", 1), ("b", "1.0", 1), ("c", "1.0", 1)]);
        let balancer = Balancer::new(BalanceStrategy::Latency, Vec::new(), &backends);
        backends[0].state.observe_latency(Duration::from_millis(50));
        backends[1].state.observe_latency(Duration::from_millis(5));
        // `c` has no sample yet: it is tried first.
        assert_eq!(balancer.pick(&backends, 0, 0, &settings()).unwrap().0, 2);
        backends[2]
            .state
            .observe_latency(Duration::from_millis(500));
        assert_eq!(counts(&balancer, &backends, 40), vec![0, 40, 0]);
    }

    #[test]
    fn weighted_and_traffic_split_follow_their_shares() {
        let backends = backends(&[("a", "1.0", 3), ("b", "1.0", 1)]);
        let balancer = Balancer::new(BalanceStrategy::Weighted, Vec::new(), &backends);
        let weighted = counts(&balancer, &backends, 4_000);
        assert!((2_700..3_300).contains(&weighted[0]), "{weighted:?}");

        let backends = backends_split();
        let split = vec![("1.0".to_owned(), 9_500), ("1.1".to_owned(), 500)];
        let balancer = Balancer::new(BalanceStrategy::RoundRobin, split, &backends);
        let shares = counts(&balancer, &backends, 10_000);
        let canary = shares[2];
        assert!((380..620).contains(&canary), "{shares:?}");
        assert_eq!(shares[3], 0, "a version outside the split gets no traffic");
        // The canary's breaker opens: its share moves to 1.0.
        backends[2].state.failed(1_000, &settings());
        backends[2].state.failed(1_000, &settings());
        let shares = counts(&balancer, &backends, 1_000);
        assert_eq!(shares[2], 0);
        assert_eq!(shares[0] + shares[1], 1_000);
    }

    fn backends_split() -> Vec<BackendRuntime> {
        backends(&[
            ("a", "1.0", 1),
            ("b", "1.0", 1),
            ("c", "1.1", 1),
            ("d", "2.0", 1),
        ])
    }

    #[test]
    fn unhealthy_backends_are_skipped_until_they_recover() {
        let backends = backends(&[("a", "1.0", 1), ("b", "1.0", 1)]);
        let balancer = Balancer::new(BalanceStrategy::RoundRobin, Vec::new(), &backends);
        backends[0].state.health_checked(false, 1);
        assert_eq!(counts(&balancer, &backends, 10), vec![0, 10]);
        backends[0].state.health_checked(true, 1);
        assert_eq!(counts(&balancer, &backends, 10), vec![5, 5]);
    }
}
