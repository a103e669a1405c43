//! `switchyard recommend`: the provider selector from the command line,
//! offline, from the embedded price table (or a given one).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::domain::Modality;
use crate::money::parse_usd_to_nanos;
use crate::pricing::PriceTable;
use crate::selector::{
    parse_parameters, Budget, Latency, ModelProfile, Precision, Recommendation, SelectionInput,
    SmartProviderSelector,
};

/// Flags of `switchyard recommend`.
#[derive(Debug, Clone, Args)]
pub struct RecommendArgs {
    /// What the model does: llm, embedding, image, video, audio.
    #[arg(long, default_value = "llm")]
    pub modality: String,
    /// Parameter count, e.g. 7B, 135M, 1.5B.
    #[arg(long)]
    pub params: String,
    /// Weight precision or quantisation: fp32, fp16, bf16, fp8, int8, int4.
    #[arg(long, default_value = "fp16")]
    pub precision: String,
    /// What to optimise: minimum_cost, balanced, performance.
    #[arg(long, default_value = "balanced")]
    pub budget: String,
    /// How much cold starts matter: critical, low, medium, high.
    #[arg(long, default_value = "medium")]
    pub latency: String,
    /// Expected requests per day, for the monthly estimate.
    #[arg(long, default_value_t = 1000)]
    pub requests_per_day: u64,
    /// Average GPU time of one request in milliseconds [default: by modality].
    #[arg(long)]
    pub avg_duration_ms: Option<u64>,
    /// Only consider these providers (repeat or comma-separate).
    #[arg(long = "provider", value_delimiter = ',')]
    pub providers: Vec<String>,
    /// Only consider this GPU (a name from the price table).
    #[arg(long)]
    pub gpu: Option<String>,
    /// Price multiplier the server applies, as a decimal.
    #[arg(long, default_value = "1.2")]
    pub markup: String,
    /// Use this price table file instead of the embedded January 2026 table.
    #[arg(long)]
    pub price_table: Option<PathBuf>,
    /// Print the recommendation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A flag value that is not one of the accepted words.
fn invalid(flag: &str, value: &str, expected: &str) -> anyhow::Error {
    anyhow::anyhow!("--{flag} `{value}` is not valid; expected one of {expected}")
}

/// The average request duration the estimate assumes when none is given.
pub fn default_duration_ms(modality: Modality) -> u64 {
    match modality {
        Modality::Llm => 3000,
        Modality::Embedding => 200,
        Modality::Image => 8000,
        Modality::Audio => 10_000,
        Modality::Video => 60_000,
    }
}

/// Turns the flags into a selector input (validating every value).
pub fn selection_input(args: &RecommendArgs) -> anyhow::Result<SelectionInput> {
    let modality = Modality::parse(&args.modality)
        .ok_or_else(|| invalid("modality", &args.modality, &Modality::expected()))?;
    let parameters = parse_parameters(&args.params).ok_or_else(|| {
        anyhow::anyhow!(
            "--params `{}` is not a parameter count such as 7B or 135M",
            args.params
        )
    })?;
    let precision = Precision::parse(&args.precision)
        .ok_or_else(|| invalid("precision", &args.precision, &Precision::expected()))?;
    let budget = Budget::parse(&args.budget)
        .ok_or_else(|| invalid("budget", &args.budget, &Budget::expected()))?;
    let latency = Latency::parse(&args.latency)
        .ok_or_else(|| invalid("latency", &args.latency, &Latency::expected()))?;
    let markup_nanos = parse_usd_to_nanos(&args.markup)
        .map_err(|_| anyhow::anyhow!("--markup `{}` is not a decimal such as 1.2", args.markup))?;
    let markup_basis_points = markup_nanos / 100_000;
    if !(10_000..=100_000).contains(&markup_basis_points) {
        anyhow::bail!("--markup must be between 1.0 and 10.0");
    }
    let avg_duration_ms = args
        .avg_duration_ms
        .unwrap_or_else(|| default_duration_ms(modality));
    if avg_duration_ms == 0 || avg_duration_ms > 3_600_000 {
        anyhow::bail!("--avg-duration-ms must be between 1 and 3600000");
    }
    Ok(SelectionInput {
        model: ModelProfile {
            modality,
            parameters,
            precision,
        },
        budget,
        latency,
        requests_per_day: args.requests_per_day,
        avg_duration_ms,
        providers: args
            .providers
            .iter()
            .map(|provider| provider.trim().to_owned())
            .filter(|provider| !provider.is_empty())
            .collect(),
        gpu: args.gpu.clone(),
        markup_basis_points,
    })
}

/// Runs the command; prints to stdout.
pub fn run(args: &RecommendArgs) -> anyhow::Result<()> {
    let table = match &args.price_table {
        Some(path) => PriceTable::parse(&std::fs::read_to_string(path).map_err(|error| {
            anyhow::anyhow!("cannot read the price table {}: {error}", path.display())
        })?)?,
        None => PriceTable::embedded()?,
    };
    let input = selection_input(args)?;
    for provider in &input.providers {
        if !table.cold_start_ms.contains_key(provider) {
            anyhow::bail!(
                "--provider `{provider}` is not in the price table; known: {}",
                table
                    .cold_start_ms
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let recommendation = SmartProviderSelector::new(&table).select(&input, &|_| None)?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &recommendation.to_json())?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", render(&recommendation))?;
    }
    stdout.flush()?;
    Ok(())
}

/// The human-readable report.
pub fn render(recommendation: &Recommendation) -> String {
    let json = recommendation.to_json();
    let best = &recommendation.best;
    let model = &recommendation.input.model;
    let gpus = if best.gpu_count > 1 {
        format!("{} × {}", best.gpu_count, best.gpu)
    } else {
        best.gpu.clone()
    };
    let mut out = String::new();
    out.push_str(&format!(
        "Model: {} with {} parameters at {} needs {} GB of GPU memory{}\n",
        model.modality,
        json["model"]["parameters_label"]
            .as_str()
            .unwrap_or_default(),
        model.precision,
        recommendation.vram_required_gb,
        if recommendation.fits_single_gpu {
            ""
        } else {
            " (more than any single GPU: multi-GPU)"
        }
    ));
    out.push_str(&format!("Recommended: {gpus} on {}\n", best.provider));
    out.push_str(&format!("  Why: {}\n", recommendation.reason));
    let costs = &json["cost_estimates"];
    out.push_str(&format!(
        "  Cost: ${:.6}/request, ${:.2}/hour active, ${:.2}/month ({:.0} credits) at {} requests/day of {} ms\n",
        costs["per_request"].as_f64().unwrap_or_default(),
        costs["per_hour_active"].as_f64().unwrap_or_default(),
        costs["monthly_estimate"].as_f64().unwrap_or_default(),
        costs["credits"]["monthly_estimate"].as_f64().unwrap_or_default(),
        recommendation.input.requests_per_day,
        recommendation.input.avg_duration_ms,
    ));
    out.push_str(&format!(
        "  Cold start: p50 {} ms, p95 {} ms\n",
        best.cold_start.p50, best.cold_start.p95
    ));
    let configuration = &json["configuration"];
    out.push_str(&format!(
        "  Configuration: {} GB on {gpus}, workers {}..{}, idle timeout {} s, {}\n",
        configuration["gpu_memory_gb"],
        configuration["min_workers"],
        configuration["max_workers"],
        configuration["idle_timeout_seconds"],
        configuration["container_image"]
            .as_str()
            .unwrap_or_default(),
    ));
    if !recommendation.alternatives.is_empty() {
        out.push_str("Alternatives:\n");
        for (index, alternative) in recommendation.alternatives.iter().enumerate() {
            let label = if alternative.gpu_count > 1 {
                format!("{} × {}", alternative.gpu_count, alternative.gpu)
            } else {
                alternative.gpu.clone()
            };
            out.push_str(&format!(
                "  {}. {label} on {}: {}; {}\n",
                index + 1,
                alternative.provider,
                alternative.cost_difference(best),
                alternative.tradeoff(best)
            ));
        }
    }
    out.push_str(&format!(
        "Prices: table of {} (provider figures dated in the table)\n",
        recommendation.price_table_date
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: RecommendArgs,
    }

    fn parse(line: &[&str]) -> RecommendArgs {
        let mut argv = vec!["recommend"];
        argv.extend_from_slice(line);
        Wrapper::parse_from(argv).args
    }

    #[test]
    fn flags_become_a_selection_input() {
        let args = parse(&[
            "--modality",
            "llm",
            "--params",
            "7B",
            "--precision",
            "int4",
            "--budget",
            "minimum_cost",
            "--latency",
            "critical",
            "--requests-per-day",
            "500",
        ]);
        let input = selection_input(&args).unwrap();
        assert_eq!(input.model.parameters, 7_000_000_000);
        assert_eq!(input.model.precision, Precision::Int4);
        assert_eq!(input.budget, Budget::MinimumCost);
        assert_eq!(input.latency, Latency::Critical);
        assert_eq!(input.requests_per_day, 500);
        assert_eq!(input.avg_duration_ms, 3000);
        assert_eq!(input.markup_basis_points, 12_000);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let error = selection_input(&parse(&["--params", "7B", "--budget", "cheap"])).unwrap_err();
        assert!(error.to_string().contains("--budget `cheap`"), "{error}");
        let error = selection_input(&parse(&["--params", "lots"])).unwrap_err();
        assert!(error.to_string().contains("--params `lots`"), "{error}");
        let error = selection_input(&parse(&["--params", "7B", "--precision", "fp4"])).unwrap_err();
        assert!(
            error.to_string().contains("fp32|fp16|bf16|fp8|int8|int4"),
            "{error}"
        );
    }

    #[test]
    fn the_report_names_the_choice_and_alternatives() {
        let table = PriceTable::embedded().unwrap();
        let input =
            selection_input(&parse(&["--params", "7B", "--budget", "minimum_cost"])).unwrap();
        let recommendation = SmartProviderSelector::new(&table)
            .select(&input, &|_| None)
            .unwrap();
        let text = render(&recommendation);
        assert!(
            text.contains("Recommended: A10G on runpod")
                || text.contains("Recommended: L4 on runpod"),
            "{text}"
        );
        assert!(text.contains("Alternatives:\n  1. "), "{text}");
        assert!(text.contains("needs 18.8 GB"), "{text}");
    }
}
