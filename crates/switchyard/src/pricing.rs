//! The dated GPU price table shipped with the binary (`data/pricing-*.toml`).

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriceTable {
    effective_date: String,
    cold_start_ms: BTreeMap<String, ColdStart>,
    gpu: Vec<RawGpu>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpu {
    name: String,
    vram_gb: u32,
    runpod_serverless_per_second: Option<String>,
    runpod_pod_per_hour: Option<String>,
    modal_per_second: Option<String>,
}

/// Cold start figures of one provider in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ColdStart {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
}

/// One GPU type and its prices in nano-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPrice {
    pub name: String,
    pub vram_gb: u32,
    pub runpod_serverless_nanos_per_second: Option<i64>,
    pub runpod_pod_nanos_per_hour: Option<i64>,
    pub modal_nanos_per_second: Option<i64>,
}

/// The validated price table.
#[derive(Debug, Clone)]
pub struct PriceTable {
    pub effective_date: String,
    pub cold_start_ms: BTreeMap<String, ColdStart>,
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
        let parse_optional = |value: &Option<String>| -> Result<Option<i64>, DecimalError> {
            value.as_deref().map(parse_usd_to_nanos).transpose()
        };
        let mut gpus = Vec::with_capacity(raw.gpu.len());
        for gpu in &raw.gpu {
            gpus.push(GpuPrice {
                name: gpu.name.clone(),
                vram_gb: gpu.vram_gb,
                runpod_serverless_nanos_per_second: parse_optional(
                    &gpu.runpod_serverless_per_second,
                )?,
                runpod_pod_nanos_per_hour: parse_optional(&gpu.runpod_pod_per_hour)?,
                modal_nanos_per_second: parse_optional(&gpu.modal_per_second)?,
            });
        }
        Ok(Self {
            effective_date: raw.effective_date,
            cold_start_ms: raw.cold_start_ms,
            gpus,
        })
    }

    /// Finds a GPU by its table name (case-insensitive).
    pub fn gpu(&self, name: &str) -> Option<&GpuPrice> {
        self.gpus
            .iter()
            .find(|gpu| gpu.name.eq_ignore_ascii_case(name))
    }

    /// Returns the per-second price of a GPU on a serverless provider, if it is offered there.
    pub fn compute_nanos_per_second(&self, provider: &str, gpu_type: &str) -> Option<i64> {
        let gpu = self.gpu(gpu_type)?;
        match provider {
            "runpod" => gpu.runpod_serverless_nanos_per_second,
            "modal" => gpu.modal_nanos_per_second,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_has_the_january_2026_gpus() {
        let table = PriceTable::embedded().unwrap();
        assert_eq!(table.effective_date, "2026-01-01");
        let names: Vec<&str> = table.gpus.iter().map(|gpu| gpu.name.as_str()).collect();
        assert_eq!(
            names,
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
    }

    #[test]
    fn rejects_bad_amounts() {
        let text = "effective_date='x'\n[cold_start_ms]\n[[gpu]]\nname='T4'\nvram_gb=16\nmodal_per_second='abc'\n";
        assert!(matches!(
            PriceTable::parse(text),
            Err(PricingError::Amount(_))
        ));
    }
}
