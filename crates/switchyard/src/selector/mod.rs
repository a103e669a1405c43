//! `SmartProviderSelector`: picks provider and GPU for a model from the dated
//! price table (no IO). The GPUs that fit the model's memory need are scored
//! by price, cold start and the caller's budget; the result carries the best
//! choice with a reason, a cost estimate and the next three alternatives.
//!
//! Rules the tests hold it to: `minimum_cost` ranks by cost alone (the
//! cheapest option that fits always wins; bonuses shape `balanced` only),
//! `performance` prefers H100 and A100 GPUs, and a `critical` latency need
//! penalises slow cold starts. When no single GPU fits, the candidates are
//! multi-GPU workers and the result says so.

pub mod model;

use std::cmp::Ordering;

use serde_json::{json, Value};
use thiserror::Error;

use crate::domain::Modality;
use crate::money::nanos_to_usd_string;
use crate::pricing::{ColdStart, PriceTable};
pub use model::{format_parameters, parse_parameters, ModelProfile, Precision};

crate::domain::wire_enum!(
    /// What the caller optimises for.
    Budget { MinimumCost => "minimum_cost", Balanced => "balanced", Performance => "performance" }
);

crate::domain::wire_enum!(
    /// How much a cold start matters: `critical` needs the fastest start,
    /// `high` tolerates slow ones.
    Latency { Critical => "critical", Low => "low", Medium => "medium", High => "high" }
);

/// Usable share of a card's memory per GPU when a model is split over several.
const MULTI_GPU_USABLE: f64 = 0.9;
/// The per-second price at which the cost score reaches zero ($0.002/s).
const COST_SCALE_NANOS: f64 = 2_000_000.0;

/// What to choose for.
#[derive(Debug, Clone)]
pub struct SelectionInput {
    pub model: ModelProfile,
    pub budget: Budget,
    pub latency: Latency,
    pub requests_per_day: u64,
    /// Average GPU time of one request.
    pub avg_duration_ms: u64,
    /// Only these providers (all in the table when empty).
    pub providers: Vec<String>,
    /// Only this GPU, when set.
    pub gpu: Option<String>,
    /// Price multiplier in basis points (12_000 = ×1.2), as the server charges.
    pub markup_basis_points: i64,
}

/// Why nothing could be chosen.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum SelectionError {
    #[error("no GPU in the price table can serve a model that needs {required_gb} GB, even split over {max_gpus} GPUs")]
    NothingFits { required_gb: f64, max_gpus: u32 },
    #[error("{0}")]
    NoCandidate(String),
}

/// One provider × GPU option.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub provider: String,
    pub gpu: String,
    pub gpu_count: u32,
    pub gpu_vram_gb: u32,
    /// Price of the whole worker (all its GPUs), nano-dollars per second.
    pub nanos_per_second: i64,
    pub cold_start: ColdStart,
    pub scale_to_zero: bool,
    pub available: bool,
    /// Why the provider cannot be used now, when unavailable.
    pub unavailable_reason: Option<String>,
    pub score: f64,
    pub costs: Costs,
}

/// Cost estimates in nano-dollars, with the markup the server charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs {
    pub per_request_nanos: i128,
    pub per_hour_active_nanos: i128,
    pub monthly_nanos: i128,
}

/// The selector's answer.
#[derive(Debug, Clone)]
pub struct Recommendation {
    pub input: SelectionInput,
    pub vram_required_gb: f64,
    pub fits_single_gpu: bool,
    pub best: Candidate,
    /// The next options, best first (at most three).
    pub alternatives: Vec<Candidate>,
    /// Every option considered, best first (fallback order).
    pub ranked: Vec<Candidate>,
    pub reason: String,
    /// Whether the best option's provider is configured on this server.
    pub deployable: bool,
    pub price_table_date: String,
}

/// Picks provider and GPU from a price table.
pub struct SmartProviderSelector<'a> {
    table: &'a PriceTable,
}

impl<'a> SmartProviderSelector<'a> {
    /// A selector over `table`.
    pub fn new(table: &'a PriceTable) -> Self {
        Self { table }
    }

    /// Scores every option and returns the recommendation. `availability`
    /// says whether a provider can be deployed to now (`None` = yes).
    pub fn select(
        &self,
        input: &SelectionInput,
        availability: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Recommendation, SelectionError> {
        let required = input.model.vram_required_gb();
        let allowed = |provider: &str| {
            input.providers.is_empty() || input.providers.iter().any(|name| name == provider)
        };
        let gpus: Vec<_> = self
            .table
            .gpus
            .iter()
            .filter(|gpu| {
                input
                    .gpu
                    .as_deref()
                    .is_none_or(|wanted| gpu.name.eq_ignore_ascii_case(wanted))
            })
            .collect();
        if gpus.is_empty() {
            return Err(SelectionError::NoCandidate(format!(
                "unknown GPU `{}`; known: {}",
                input.gpu.as_deref().unwrap_or_default(),
                self.table.gpu_names().join(", ")
            )));
        }
        let fits_single_gpu = gpus.iter().any(|gpu| f64::from(gpu.vram_gb) >= required);
        let mut candidates = Vec::new();
        let mut max_gpus = 1;
        for gpu in &gpus {
            for (provider, nanos) in &gpu.nanos_per_second {
                if !allowed(provider) {
                    continue;
                }
                let facts = self.table.providers.get(provider);
                let provider_max = facts.map_or(8, |facts| facts.max_gpus_per_worker);
                max_gpus = max_gpus.max(provider_max);
                let count = if fits_single_gpu {
                    if f64::from(gpu.vram_gb) < required {
                        continue;
                    }
                    1
                } else {
                    match [2_u32, 4, 8].into_iter().find(|count| {
                        *count <= provider_max
                            && f64::from(gpu.vram_gb) * f64::from(*count) * MULTI_GPU_USABLE
                                >= required
                    }) {
                        Some(count) => count,
                        None => continue,
                    }
                };
                let Some(cold_start) = self.table.cold_start_ms.get(provider).copied() else {
                    continue;
                };
                let unavailable_reason = availability(provider);
                let scale_to_zero = self.table.scales_to_zero(provider);
                let nanos_per_second = nanos.saturating_mul(i64::from(count));
                let costs = estimate_costs(nanos_per_second, scale_to_zero, input);
                let mut candidate = Candidate {
                    provider: provider.clone(),
                    gpu: gpu.name.clone(),
                    gpu_count: count,
                    gpu_vram_gb: gpu.vram_gb,
                    nanos_per_second,
                    cold_start,
                    scale_to_zero,
                    available: unavailable_reason.is_none(),
                    unavailable_reason,
                    score: 0.0,
                    costs,
                };
                candidate.score = score(&candidate, input);
                candidates.push(candidate);
            }
        }
        if candidates.is_empty() {
            if !fits_single_gpu && input.providers.is_empty() && input.gpu.is_none() {
                return Err(SelectionError::NothingFits {
                    required_gb: required,
                    max_gpus,
                });
            }
            return Err(SelectionError::NoCandidate(format!(
                "no {} option can serve a model that needs {required} GB{}",
                if input.providers.is_empty() {
                    "provider".to_owned()
                } else {
                    input.providers.join("/")
                },
                input
                    .gpu
                    .as_deref()
                    .map(|gpu| format!(" on {gpu}"))
                    .unwrap_or_default()
            )));
        }
        candidates.sort_by(|left, right| rank(left, right, input.budget));
        // Options that can be deployed now come first; the order is kept within each group.
        let (mut ranked, unavailable): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|candidate| candidate.available);
        let deployable = !ranked.is_empty();
        ranked.extend(unavailable);
        let best = ranked[0].clone();
        let alternatives = ranked.iter().skip(1).take(3).cloned().collect();
        let reason = explain(&best, input, required, fits_single_gpu, &ranked);
        Ok(Recommendation {
            input: input.clone(),
            vram_required_gb: required,
            fits_single_gpu,
            best,
            alternatives,
            ranked,
            reason,
            deployable,
            price_table_date: self.table.effective_date.clone(),
        })
    }
}

/// Cost estimates of one option. Scale-to-zero providers bill only the GPU
/// time requests take; the others bill one replica all month.
fn estimate_costs(nanos_per_second: i64, scale_to_zero: bool, input: &SelectionInput) -> Costs {
    let markup = i128::from(input.markup_basis_points);
    let with_markup = |nanos: i128| nanos * markup / 10_000;
    let price = i128::from(nanos_per_second);
    let per_request = price * i128::from(input.avg_duration_ms) / 1000;
    let active_ms_per_day =
        (i128::from(input.requests_per_day) * i128::from(input.avg_duration_ms)).min(86_400_000);
    let monthly = if scale_to_zero {
        price * active_ms_per_day * 30 / 1000
    } else {
        price * 86_400 * 30
    };
    Costs {
        per_request_nanos: with_markup(per_request),
        per_hour_active_nanos: with_markup(price * 3600),
        monthly_nanos: with_markup(monthly),
    }
}

/// Cold-start penalty in score points for a latency need.
fn latency_penalty(cold_start: ColdStart, latency: Latency) -> f64 {
    let (p50, p95) = (cold_start.p50 as f64, cold_start.p95 as f64);
    match latency {
        Latency::Critical => p50 / 50.0 + p95 / 500.0,
        Latency::Low => p50 / 100.0 + p95 / 1000.0,
        Latency::Medium => p95 / 4000.0,
        Latency::High => 0.0,
    }
}

/// The effective price per second of GPU time actually used: equal to the
/// price when idle time is free, higher when a replica runs all day.
fn effective_nanos_per_second(candidate: &Candidate, input: &SelectionInput) -> f64 {
    if candidate.scale_to_zero {
        return candidate.nanos_per_second as f64;
    }
    let active_seconds_per_day = ((input.requests_per_day as f64) * (input.avg_duration_ms as f64)
        / 1000.0)
        .clamp(1.0, 86_400.0);
    candidate.nanos_per_second as f64 * 86_400.0 / active_seconds_per_day
}

fn is_h100(gpu: &str) -> bool {
    gpu.eq_ignore_ascii_case("H100")
}

fn is_a100(gpu: &str) -> bool {
    gpu.to_ascii_uppercase().starts_with("A100")
}

/// The score of an option for `balanced` and `performance` (higher is better).
/// `minimum_cost` does not use it: it ranks by cost alone.
fn score(candidate: &Candidate, input: &SelectionInput) -> f64 {
    let cost_score =
        (40.0 * (1.0 - effective_nanos_per_second(candidate, input) / COST_SCALE_NANOS)).max(0.0);
    let penalty = latency_penalty(candidate.cold_start, input.latency);
    match input.budget {
        Budget::MinimumCost => cost_score - penalty,
        Budget::Balanced => {
            let mut score = 100.0 + cost_score - penalty;
            // Modal's cold starts are steadier (p95 2 s against 6 s).
            if candidate.provider == "modal" {
                score += 5.0;
            }
            // Consumer RTX cards on RunPod are good value for 24 GB models.
            if candidate.provider == "runpod" && candidate.gpu.starts_with("RTX") {
                score += 10.0;
            }
            score
        }
        Budget::Performance => {
            let mut score = 100.0 + cost_score * 0.25 - penalty
                + f64::from(candidate.gpu_vram_gb * candidate.gpu_count) / 10.0;
            if is_h100(&candidate.gpu) {
                score += 60.0;
            } else if is_a100(&candidate.gpu) {
                score += 45.0;
            }
            score
        }
    }
}

/// Orders two options, best first.
fn rank(left: &Candidate, right: &Candidate, budget: Budget) -> Ordering {
    let by_cost = left
        .costs
        .monthly_nanos
        .cmp(&right.costs.monthly_nanos)
        .then(left.nanos_per_second.cmp(&right.nanos_per_second));
    let tie_break = left
        .cold_start
        .p50
        .cmp(&right.cold_start.p50)
        .then_with(|| left.provider.cmp(&right.provider))
        .then_with(|| left.gpu.cmp(&right.gpu));
    match budget {
        Budget::MinimumCost => by_cost.then(tie_break),
        Budget::Balanced | Budget::Performance => right
            .score
            .partial_cmp(&left.score)
            .unwrap_or(Ordering::Equal)
            .then(by_cost)
            .then(tie_break),
    }
}

fn seconds(ms: u64) -> String {
    let text = format!("{:.1}", ms as f64 / 1000.0);
    format!("{} s", text.trim_end_matches(".0"))
}

/// Dollars for people: cents from $1 up, every significant digit below.
fn usd(nanos: i128) -> String {
    if nanos >= 1_000_000_000 {
        format!("${:.2}", nanos as f64 / 1e9)
    } else {
        format!(
            "${}",
            nanos_to_usd_string(i64::try_from(nanos).unwrap_or(i64::MAX))
        )
    }
}

fn gpu_label(candidate: &Candidate) -> String {
    if candidate.gpu_count > 1 {
        format!("{}×{}", candidate.gpu_count, candidate.gpu)
    } else {
        candidate.gpu.clone()
    }
}

fn explain(
    best: &Candidate,
    input: &SelectionInput,
    required: f64,
    fits_single_gpu: bool,
    ranked: &[Candidate],
) -> String {
    let fit = if fits_single_gpu {
        format!(
            "the model needs {required} GB and fits on one {} ({} GB)",
            best.gpu, best.gpu_vram_gb
        )
    } else {
        format!(
            "no single GPU has the {required} GB the model needs, so it is split over {} × {} ({} GB in all, tensor parallel)",
            best.gpu_count,
            best.gpu,
            best.gpu_vram_gb * best.gpu_count
        )
    };
    let why = match input.budget {
        Budget::MinimumCost => "it is the cheapest option that fits".to_owned(),
        Budget::Balanced => format!(
            "it balances price and cold start best for a {} latency need",
            input.latency
        ),
        Budget::Performance => "it is the fastest hardware on offer for this model".to_owned(),
    };
    let mut reason = format!(
        "{} on {} because {why}: {fit}; {}/s, {}/month at {} requests/day, cold start p50 {} / p95 {}",
        gpu_label(best),
        best.provider,
        usd(i128::from(best.nanos_per_second)),
        usd(best.costs.monthly_nanos),
        input.requests_per_day,
        seconds(best.cold_start.p50),
        seconds(best.cold_start.p95),
    );
    if let Some(why_not) = &best.unavailable_reason {
        reason.push_str(&format!(". Not deployable here yet: {why_not}"));
    } else if let Some(better) = ranked.iter().find(|candidate| !candidate.available) {
        if rank(better, best, input.budget) == Ordering::Less {
            reason.push_str(&format!(
                ". {} on {} would rank higher but is unavailable: {}",
                gpu_label(better),
                better.provider,
                better.unavailable_reason.as_deref().unwrap_or_default()
            ));
        }
    }
    reason
}

impl Candidate {
    /// How this option compares with `best`, for people.
    pub fn cost_difference(&self, best: &Candidate) -> String {
        let delta = self.costs.monthly_nanos - best.costs.monthly_nanos;
        let percent = if best.costs.monthly_nanos > 0 {
            format!(
                " ({:+.0}%)",
                delta as f64 * 100.0 / best.costs.monthly_nanos as f64
            )
        } else {
            String::new()
        };
        let per_request = self.costs.per_request_nanos - best.costs.per_request_nanos;
        format!(
            "{}{}/month{percent}, {}{}/request",
            if delta < 0 { "-" } else { "+" },
            usd(delta.abs()),
            if per_request < 0 { "-" } else { "+" },
            usd(per_request.abs()),
        )
    }

    /// The trade-off of choosing this option over `best`.
    pub fn tradeoff(&self, best: &Candidate) -> String {
        let mut parts = Vec::new();
        match self.nanos_per_second.cmp(&best.nanos_per_second) {
            Ordering::Less => parts.push("cheaper per second".to_owned()),
            Ordering::Greater => parts.push("costs more per second".to_owned()),
            Ordering::Equal => {}
        }
        match self.cold_start.p95.cmp(&best.cold_start.p95) {
            Ordering::Less => parts.push(format!(
                "faster cold starts (p95 {} vs {})",
                seconds(self.cold_start.p95),
                seconds(best.cold_start.p95)
            )),
            Ordering::Greater => parts.push(format!(
                "slower cold starts (p95 {} vs {})",
                seconds(self.cold_start.p95),
                seconds(best.cold_start.p95)
            )),
            Ordering::Equal => {}
        }
        let vram = self.gpu_vram_gb * self.gpu_count;
        let best_vram = best.gpu_vram_gb * best.gpu_count;
        if vram > best_vram {
            parts.push(format!(
                "more memory ({vram} GB) for longer contexts or batches"
            ));
        } else if vram < best_vram {
            parts.push(format!("less memory ({vram} GB)"));
        }
        if !self.scale_to_zero {
            parts.push("no scale to zero: one replica runs all month".to_owned());
        }
        if let Some(reason) = &self.unavailable_reason {
            parts.push(format!("unavailable: {reason}"));
        }
        if parts.is_empty() {
            "same price and cold start".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// Default scaling and engine of a modality (min 0 = scale to zero).
pub fn default_configuration(modality: Modality) -> (u32, u32, u32) {
    match modality {
        Modality::Llm | Modality::Embedding => (0, 3, 60),
        Modality::Image | Modality::Audio => (0, 2, 30),
        Modality::Video => (0, 1, 120),
    }
}

/// The container or engine an option would run.
pub fn container_image(provider: &str, modality: Modality) -> &'static str {
    match (provider, modality) {
        ("runpod", Modality::Llm | Modality::Embedding) => "runpod/worker-v1-vllm:v2.25.2",
        ("runpod", Modality::Image) => "runpod/worker-comfyui:stable",
        ("runpod", Modality::Audio) => "runpod/worker-faster_whisper:latest",
        ("huggingface", _) => "vllm/vllm-openai:v0.23.0",
        ("modal", _) => "modal app (vllm serve, generated)",
        ("replicate", _) => "replicate/vllm (trained version)",
        ("together", _) => "Together dedicated endpoint",
        _ => "vllm/vllm-openai",
    }
}

fn nanos_json(nanos: i128) -> Value {
    // Dollars as a JSON number for people and charts; exact strings sit beside them.
    json!((nanos as f64) / 1e9)
}

fn credits_json(nanos: i128) -> Value {
    // 1 credit = $0.01 = 10,000,000 nano-dollars.
    json!((nanos as f64) / 1e7)
}

impl Recommendation {
    /// The JSON document of `switchyard recommend --json` and the deploy preview.
    pub fn to_json(&self) -> Value {
        let best = &self.best;
        let (min_workers, max_workers, idle_timeout) =
            default_configuration(self.input.model.modality);
        json!({
            "provider": best.provider,
            "gpu_type": best.gpu,
            "reason": self.reason,
            "deployable": self.deployable,
            "cost_estimates": {
                "per_request": nanos_json(best.costs.per_request_nanos),
                "per_hour_active": nanos_json(best.costs.per_hour_active_nanos),
                "monthly_estimate": nanos_json(best.costs.monthly_nanos),
                "currency": "USD",
                "includes_markup": self.input.markup_basis_points != 10_000,
                "credits": {
                    "per_request": credits_json(best.costs.per_request_nanos),
                    "per_hour_active": credits_json(best.costs.per_hour_active_nanos),
                    "monthly_estimate": credits_json(best.costs.monthly_nanos),
                },
                "requests_per_day": self.input.requests_per_day,
                "avg_request_duration_ms": self.input.avg_duration_ms,
            },
            "performance": {
                "cold_start_p50_ms": best.cold_start.p50,
                "cold_start_p95_ms": best.cold_start.p95,
                "cold_start_p99_ms": best.cold_start.p99,
                "expected_latency_ms": self.input.avg_duration_ms,
                "expected_cold_latency_ms": self.input.avg_duration_ms + best.cold_start.p50,
            },
            "configuration": {
                "gpu_count": best.gpu_count,
                "gpu_memory_gb": best.gpu_vram_gb * best.gpu_count,
                "vram_required_gb": self.vram_required_gb,
                "fits_single_gpu": self.fits_single_gpu,
                "multi_gpu": best.gpu_count > 1,
                "precision": self.input.model.precision,
                "min_workers": min_workers,
                "max_workers": max_workers,
                "idle_timeout_seconds": idle_timeout,
                "scale_to_zero": best.scale_to_zero,
                "container_image": container_image(&best.provider, self.input.model.modality),
            },
            "model": {
                "modality": self.input.model.modality,
                "parameters": self.input.model.parameters,
                "parameters_label": format_parameters(self.input.model.parameters),
                "precision": self.input.model.precision,
                "weights_gb": (self.input.model.weights_gb() * 10.0).round() / 10.0,
            },
            "criteria": {
                "budget": self.input.budget,
                "latency": self.input.latency,
            },
            "alternatives": self.alternatives.iter().map(|candidate| json!({
                "provider": candidate.provider,
                "gpu_type": candidate.gpu,
                "gpu_count": candidate.gpu_count,
                "available": candidate.available,
                "cost_difference": candidate.cost_difference(best),
                "tradeoff": candidate.tradeoff(best),
                "cost_estimates": {
                    "per_request": nanos_json(candidate.costs.per_request_nanos),
                    "per_hour_active": nanos_json(candidate.costs.per_hour_active_nanos),
                    "monthly_estimate": nanos_json(candidate.costs.monthly_nanos),
                },
                "cold_start_p50_ms": candidate.cold_start.p50,
                "cold_start_p95_ms": candidate.cold_start.p95,
            })).collect::<Vec<_>>(),
            "price_table": {"effective_date": self.price_table_date},
        })
    }
}

#[cfg(test)]
mod tests;
