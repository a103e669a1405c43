//! What a model needs: parameter count, precision and modality turned into
//! the GPU memory it takes to serve it.

use serde::{Deserialize, Serialize};

use crate::domain::Modality;

crate::domain::wire_enum!(
    /// Numeric precision (or quantisation) of the served weights.
    Precision { Fp32 => "fp32", Fp16 => "fp16", Bf16 => "bf16", Fp8 => "fp8", Int8 => "int8", Int4 => "int4" }
);

impl Precision {
    /// Bytes per parameter, in tenths (int4 is half a byte).
    fn tenth_bytes_per_parameter(self) -> u64 {
        match self {
            Precision::Fp32 => 40,
            Precision::Fp16 | Precision::Bf16 => 20,
            Precision::Fp8 | Precision::Int8 => 10,
            Precision::Int4 => 5,
        }
    }
}

/// A model as the selector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelProfile {
    pub modality: Modality,
    /// Parameters, in units (7B = 7_000_000_000).
    pub parameters: u64,
    pub precision: Precision,
}

impl ModelProfile {
    /// Gigabytes the weights take at the profile's precision.
    pub fn weights_gb(&self) -> f64 {
        let tenth_bytes =
            u128::from(self.parameters) * u128::from(self.precision.tenth_bytes_per_parameter());
        tenth_bytes as f64 / 10.0 / 1e9
    }

    /// GPU memory needed to serve the model, in GB: the weights plus what the
    /// engine needs besides them. LLMs keep a KV cache (vLLM reserves 90% of
    /// the card; 20% of the weights plus 2 GB leaves room for a useful
    /// context); diffusion and video models hold activations several times
    /// the size of a latent; embedding and audio models need little extra.
    pub fn vram_required_gb(&self) -> f64 {
        let weights = self.weights_gb();
        let (factor, fixed) = match self.modality {
            Modality::Llm => (1.2, 2.0),
            Modality::Embedding => (1.2, 1.0),
            Modality::Audio => (1.3, 1.0),
            Modality::Image => (1.5, 2.0),
            Modality::Video => (1.5, 4.0),
        };
        round_tenth(weights * factor + fixed)
    }
}

fn round_tenth(value: f64) -> f64 {
    (value * 10.0).ceil() / 10.0
}

/// Parses a parameter count such as `7B`, `135M`, `1.5b`, `70b` or `7000000000`.
pub fn parse_parameters(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, multiplier) = match text.char_indices().last()? {
        (index, 'b' | 'B') => (&text[..index], 1e9),
        (index, 'm' | 'M') => (&text[..index], 1e6),
        (index, 'k' | 'K') => (&text[..index], 1e3),
        (index, 't' | 'T') => (&text[..index], 1e12),
        _ => (text, 1.0),
    };
    let value: f64 = number.trim().parse().ok()?;
    if !value.is_finite() || value <= 0.0 {
        return None;
    }
    let parameters = value * multiplier;
    (1.0..1e15)
        .contains(&parameters)
        .then(|| parameters.round() as u64)
}

/// Renders a parameter count for people: `7B`, `135M`, `1.5B`.
pub fn format_parameters(parameters: u64) -> String {
    let (value, unit) = if parameters >= 1_000_000_000 {
        (parameters as f64 / 1e9, "B")
    } else if parameters >= 1_000_000 {
        (parameters as f64 / 1e6, "M")
    } else {
        (parameters as f64 / 1e3, "K")
    };
    let text = format!("{value:.1}");
    format!("{}{unit}", text.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parameter_counts() {
        assert_eq!(parse_parameters("7B"), Some(7_000_000_000));
        assert_eq!(parse_parameters("1.5b"), Some(1_500_000_000));
        assert_eq!(parse_parameters("135M"), Some(135_000_000));
        assert_eq!(parse_parameters("70000000000"), Some(70_000_000_000));
        assert_eq!(parse_parameters("-3B"), None);
        assert_eq!(parse_parameters("seven"), None);
        assert_eq!(parse_parameters(""), None);
        assert_eq!(format_parameters(7_000_000_000), "7B");
        assert_eq!(format_parameters(1_500_000_000), "1.5B");
        assert_eq!(format_parameters(135_000_000), "135M");
    }

    #[test]
    fn vram_grows_with_precision_and_modality() {
        let llm = |precision| ModelProfile {
            modality: Modality::Llm,
            parameters: 7_000_000_000,
            precision,
        };
        // 7B fp16 = 14 GB of weights; 14 × 1.2 + 2 = 18.8 GB.
        assert!((llm(Precision::Fp16).vram_required_gb() - 18.8).abs() < 1e-9);
        assert!((llm(Precision::Int8).vram_required_gb() - 10.4).abs() < 1e-9);
        assert!((llm(Precision::Int4).vram_required_gb() - 6.2).abs() < 1e-9);
        let image = ModelProfile {
            modality: Modality::Image,
            parameters: 3_500_000_000,
            precision: Precision::Fp16,
        };
        assert!((image.vram_required_gb() - 12.5).abs() < 1e-9);
    }
}
