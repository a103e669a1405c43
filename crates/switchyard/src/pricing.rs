//! The dated GPU price table shipped with the binary (`data/pricing-*.toml`):
//! per-second GPU prices by provider, cold-start figures and provider facts.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

use crate::money::{parse_usd_to_nanos, DecimalError};

/// The price table that is embedded at build time.
pub const EMBEDDED_PRICE_TABLE: &str = include_str!("../data/pricing-2026-01.toml");

/// A failure to load the price table.
#[derive(Debug, Error)]
pub enum PricingError {
    #[error("price table is not valid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("price table has a bad amount: {0}")]
    Amount(#[from] DecimalError),
    #[error("price table is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceTable {
    effective_date: String,
    cold_start_ms: BTreeMap<String, ColdStart>,
    #[serde(default)]
    provider: BTreeMap<String, ProviderFacts>,
    gpu: Vec<RawGpu>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpu {
    name: String,
    vram_gb: u32,
    runpod_pod_per_hour: Option<String>,
    #[serde(default)]
    per_second: BTreeMap<String, String>,
}

/// Cold start figures of one provider in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ColdStart {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
}

/// What the table says about a provider besides prices.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderFacts {
    /// Date of the provider's figures.
    pub as_of: String,
    /// Where the figures come from.
    pub source: String,
    /// Whether idle workers cost nothing (otherwise one replica always runs).
    pub scale_to_zero: bool,
    /// Most GPUs one worker may have.
    pub max_gpus_per_worker: u32,
}

/// One GPU type and its prices in nano-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPrice {
    pub name: String,
    pub vram_gb: u32,
    pub runpod_pod_nanos_per_hour: Option<i64>,
    /// Per-second price by provider name (`runpod`, `modal`, ...).
    pub nanos_per_second: BTreeMap<String, i64>,
}

/// The validated price table.
#[derive(Debug, Clone)]
pub struct PriceTable {
    pub effective_date: String,
    pub cold_start_ms: BTreeMap<String, ColdStart>,
    pub providers: BTreeMap<String, ProviderFacts>,
    pub gpus: Vec<GpuPrice>,
}

impl PriceTable {
    /// Loads the table embedded in the binary.
    pub fn embedded() -> Result<Self, PricingError> {
        Self::parse(EMBEDDED_PRICE_TABLE)
    }

    /// Parses a price table from TOML text.
    pub fn parse(text: &str) -> Result<Self, PricingError> {
        let raw: RawPriceTable = toml::from_str(text)?;
        let mut gpus = Vec::with_capacity(raw.gpu.len());
        for gpu in &raw.gpu {
            let mut nanos_per_second = BTreeMap::new();
            for (provider, amount) in &gpu.per_second {
                if !raw.cold_start_ms.contains_key(provider) {
                    return Err(PricingError::Inconsistent(format!(
                        "GPU {} has a {provider} price but {provider} has no cold_start_ms",
                        gpu.name
                    )));
                }
                nanos_per_second.insert(provider.clone(), parse_usd_to_nanos(amount)?);
            }
            gpus.push(GpuPrice {
                name: gpu.name.clone(),
                vram_gb: gpu.vram_gb,
                runpod_pod_nanos_per_hour: gpu
                    .runpod_pod_per_hour
                    .as_deref()
                    .map(parse_usd_to_nanos)
                    .transpose()?,
                nanos_per_second,
            });
        }
        Ok(Self {
            effective_date: raw.effective_date,
            cold_start_ms: raw.cold_start_ms,
            providers: raw.provider,
            gpus,
        })
    }

    /// Finds a GPU by its table name (case-insensitive).
    pub fn gpu(&self, name: &str) -> Option<&GpuPrice> {
        self.gpus
            .iter()
            .find(|gpu| gpu.name.eq_ignore_ascii_case(name))
    }

    /// Returns the per-second price of a GPU on a provider, if it is offered there.
    pub fn compute_nanos_per_second(&self, provider: &str, gpu_type: &str) -> Option<i64> {
        self.gpu(gpu_type)?.nanos_per_second.get(provider).copied()
    }

    /// Whether idle workers of the provider cost nothing (unknown providers: yes).
    pub fn scales_to_zero(&self, provider: &str) -> bool {
        self.providers
            .get(provider)
            .is_none_or(|facts| facts.scale_to_zero)
    }

    /// The GPU names, in table order.
    pub fn gpu_names(&self) -> Vec<&str> {
        self.gpus.iter().map(|gpu| gpu.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_has_the_january_2026_gpus() {
        let table = PriceTable::embedded().unwrap();
        assert_eq!(table.effective_date, "2026-01-01");
        assert_eq!(
            table.gpu_names(),
            [
                "T4",
                "L4",
                "A10G",
                "RTX3090",
                "RTX4090",
                "A100-40GB",
                "A100-80GB",
                "H100"
            ]
        );
        assert_eq!(table.compute_nanos_per_second("runpod", "t4"), Some(55_000));
        assert_eq!(
            table.compute_nanos_per_second("modal", "H100"),
            Some(1_527_000)
        );
        assert_eq!(table.compute_nanos_per_second("modal", "RTX4090"), None);
        assert_eq!(table.cold_start_ms["runpod"].p95, 6000);
        assert!(table.scales_to_zero("runpod"));
        assert!(!table.scales_to_zero("together"));
        assert_eq!(table.providers["huggingface"].as_of, "2026-05-19");
    }

    #[test]
    fn rejects_bad_amounts_and_unknown_providers() {
        let text = "effective_date='x'\n[cold_start_ms.modal]\np50=1\np95=2\np99=3\n[[gpu]]\nname='T4'\nvram_gb=16\n[gpu.per_second]\nmodal='abc'\n";
        assert!(matches!(
            PriceTable::parse(text),
            Err(PricingError::Amount(_))
        ));
        let text = "effective_date='x'\n[cold_start_ms]\n[[gpu]]\nname='T4'\nvram_gb=16\n[gpu.per_second]\nacme='0.1'\n";
        assert!(matches!(
            PriceTable::parse(text),
            Err(PricingError::Inconsistent(_))
        ));
    }
}
