//! Replicate wire rules: GPU to hardware SKU, deployment objects to
//! resources, and which error answers mean a conflict or no capacity.

use std::collections::BTreeMap;

use serde_json::Value;

use super::KIND;
use crate::providers::{GpuChoice, ProviderError, ProviderResource};

/// The SKU for a GPU choice: the nearest SKU with at least the GPU's memory
/// (PROVIDERS.md 4.6). Several GPUs use the `-2x`/`-4x`/`-8x` SKUs, the count
/// rounded up; T4 and 24 GB cards have no multi-GPU SKU and move to A40s.
pub fn hardware_sku(gpu: &GpuChoice) -> Result<String, ProviderError> {
    let family = match gpu.name.as_str() {
        "T4" => "gpu-t4",
        "L4" | "A10G" | "RTX3090" | "RTX4090" => "gpu-a40-small",
        "A100-40GB" => "gpu-a40-large",
        "A100-80GB" => "gpu-a100-large",
        "H100" => "gpu-h100",
        _ => match gpu.vram_gb {
            0..=16 => "gpu-t4",
            17..=48 => "gpu-a40-small",
            49..=80 => "gpu-a100-large",
            _ => {
                return Err(ProviderError::Unsupported {
                    provider: KIND,
                    message: format!("offer a GPU with {} GB of memory", gpu.vram_gb),
                })
            }
        },
    };
    let count = match gpu.count {
        0 | 1 => return Ok(family.to_owned()),
        2 => 2,
        3 | 4 => 4,
        5..=8 => 8,
        more => {
            return Err(ProviderError::Unsupported {
                provider: KIND,
                message: format!("run {more} GPUs per instance (at most 8)"),
            })
        }
    };
    let multi = match family {
        "gpu-a100-large" | "gpu-h100" => family,
        _ => "gpu-a40-large",
    };
    Ok(format!("{multi}-{count}x"))
}

/// A resource as `find` and `list_managed` report it, from a deployment object.
pub(super) fn resource_from_deployment(deployment: &Value, owner: &str) -> ProviderResource {
    let text = |pointer: &str| {
        deployment
            .pointer(pointer)
            .map(|value| match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .filter(|text| text != "null")
    };
    let owner = text("/owner").unwrap_or_else(|| owner.to_owned());
    let name = text("/name").unwrap_or_default();
    let mut details = BTreeMap::new();
    details.insert("owner".to_owned(), owner.clone());
    for (key, pointer) in [
        ("model", "/current_release/model"),
        ("version", "/current_release/version"),
        ("hardware", "/current_release/configuration/hardware"),
        (
            "min_instances",
            "/current_release/configuration/min_instances",
        ),
        (
            "max_instances",
            "/current_release/configuration/max_instances",
        ),
    ] {
        if let Some(value) = text(pointer) {
            details.insert(key.to_owned(), value);
        }
    }
    ProviderResource {
        provider: KIND,
        id: format!("{owner}/{name}"),
        name,
        details,
    }
}

/// A create that collided with an existing object of the same name.
pub(super) fn is_conflict(error: &ProviderError) -> bool {
    match error {
        ProviderError::Rejected {
            status, message, ..
        } => *status == 409 || message.to_ascii_lowercase().contains("already exists"),
        _ => false,
    }
}

/// Turns a rejection about hardware that is not available into `NoCapacity`.
pub(super) fn capacity_error(error: ProviderError) -> ProviderError {
    match error {
        ProviderError::Rejected { message, .. } | ProviderError::Server { message, .. }
            if reports_no_capacity(&message) =>
        {
            ProviderError::NoCapacity {
                provider: KIND,
                message,
            }
        }
        other => other,
    }
}

/// The rule: the message mentions capacity, or hardware that is not available.
fn reports_no_capacity(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    let unavailable = message.contains("not available")
        || message.contains("unavailable")
        || message.contains("out of stock");
    message.contains("capacity") || (message.contains("hardware") && unavailable)
}

/// The path and query of a pagination URL, relative to the API base URL.
pub(super) fn relative_path(base_url: &str, next: &str) -> Result<String, ProviderError> {
    if let Some(rest) = next.strip_prefix(base_url) {
        return Ok(rest.to_owned());
    }
    if next.starts_with('/') {
        return Ok(next.to_owned());
    }
    // A URL on another host: keep only its path, so the token never leaves the API host.
    next.split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|slash| rest[slash..].to_owned()))
        .ok_or_else(|| ProviderError::BadResponse {
            provider: KIND,
            message: format!("pagination link {next:?} is not a URL"),
        })
}

pub(super) fn string_at(body: &Value, pointer: &str) -> Result<String, ProviderError> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::BadResponse {
            provider: KIND,
            message: format!("the answer has no {pointer}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(name: &str, count: u32, vram_gb: u32) -> GpuChoice {
        GpuChoice {
            name: name.to_owned(),
            count,
            vram_gb,
        }
    }

    #[test]
    fn gpus_map_to_the_nearest_sku_with_enough_memory() {
        let cases = [
            (gpu("T4", 1, 16), "gpu-t4"),
            (gpu("L4", 1, 24), "gpu-a40-small"),
            (gpu("A10G", 1, 24), "gpu-a40-small"),
            (gpu("RTX4090", 1, 24), "gpu-a40-small"),
            (gpu("A100-40GB", 1, 40), "gpu-a40-large"),
            (gpu("A100-80GB", 1, 80), "gpu-a100-large"),
            (gpu("H100", 1, 80), "gpu-h100"),
            (gpu("H100", 2, 80), "gpu-h100-2x"),
            (gpu("A100-80GB", 3, 80), "gpu-a100-large-4x"),
            (gpu("L4", 2, 24), "gpu-a40-large-2x"),
            (gpu("T4", 8, 16), "gpu-a40-large-8x"),
            (gpu("B200", 1, 180), ""),
            (gpu("H100", 16, 80), ""),
            (gpu("X48", 1, 48), "gpu-a40-small"),
        ];
        for (choice, expected) in cases {
            match hardware_sku(&choice) {
                Ok(sku) => assert_eq!(sku, expected, "{choice:?}"),
                Err(error) => {
                    assert_eq!(expected, "", "{choice:?}: {error}");
                    assert_eq!(error.code(), "provider_unsupported");
                }
            }
        }
    }

    #[test]
    fn capacity_rejections_become_no_capacity() {
        let rejected = |message: &str| ProviderError::Rejected {
            provider: KIND,
            status: 400,
            message: message.to_owned(),
        };
        assert_eq!(
            capacity_error(rejected("Hardware gpu-h100 is not available right now")).code(),
            "provider_no_capacity"
        );
        assert_eq!(
            capacity_error(rejected("insufficient capacity")).code(),
            "provider_no_capacity"
        );
        assert_eq!(
            capacity_error(rejected("version does not exist")).code(),
            "provider_rejected"
        );
    }

    #[test]
    fn pagination_links_stay_on_the_api_host() {
        let base = "https://api.replicate.com";
        assert_eq!(
            relative_path(base, "https://api.replicate.com/v1/deployments?cursor=abc").unwrap(),
            "/v1/deployments?cursor=abc"
        );
        assert_eq!(
            relative_path(base, "https://elsewhere.example/v1/deployments?cursor=x").unwrap(),
            "/v1/deployments?cursor=x"
        );
        assert!(relative_path(base, "cursor=x").is_err());
    }
}
