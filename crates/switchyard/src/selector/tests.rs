//! The selector's decisions, tested as rules over many inputs.

use super::*;

fn table() -> PriceTable {
    PriceTable::embedded().unwrap()
}

fn input(modality: Modality, parameters: u64, precision: Precision) -> SelectionInput {
    SelectionInput {
        model: ModelProfile {
            modality,
            parameters,
            precision,
        },
        budget: Budget::Balanced,
        latency: Latency::Medium,
        requests_per_day: 1000,
        avg_duration_ms: 2000,
        providers: Vec::new(),
        gpu: None,
        markup_basis_points: 12_000,
    }
}

fn all_available(_: &str) -> Option<String> {
    None
}

/// Every input the rules are checked on.
fn grid() -> Vec<SelectionInput> {
    let mut inputs = Vec::new();
    for modality in Modality::ALL {
        for parameters in [
            135_000_000,
            1_000_000_000,
            7_000_000_000,
            13_000_000_000,
            34_000_000_000,
            70_000_000_000,
        ] {
            for precision in Precision::ALL {
                for latency in Latency::ALL {
                    for requests_per_day in [0, 100, 10_000] {
                        let mut one = input(*modality, parameters, *precision);
                        one.latency = *latency;
                        one.requests_per_day = requests_per_day;
                        inputs.push(one);
                    }
                }
            }
        }
    }
    inputs
}

#[test]
fn minimum_cost_always_picks_the_cheapest_option_that_fits() {
    let table = table();
    let selector = SmartProviderSelector::new(&table);
    let mut checked = 0;
    for mut one in grid() {
        one.budget = Budget::MinimumCost;
        let Ok(recommendation) = selector.select(&one, &all_available) else {
            continue;
        };
        let required = one.model.vram_required_gb();
        // Recompute the single-GPU options straight from the table.
        let fitting: Vec<(String, &str, i64)> = table
            .gpus
            .iter()
            .filter(|gpu| f64::from(gpu.vram_gb) >= required)
            .flat_map(|gpu| {
                gpu.nanos_per_second
                    .iter()
                    .map(move |(provider, nanos)| (provider.clone(), gpu.name.as_str(), *nanos))
            })
            .collect();
        if !fitting.is_empty() {
            assert_eq!(
                recommendation.ranked.len(),
                fitting.len(),
                "every fitting option is ranked"
            );
        }
        for candidate in &recommendation.ranked {
            assert!(
                recommendation.best.costs.monthly_nanos <= candidate.costs.monthly_nanos,
                "{:?}: {} {} is cheaper than the pick {} {}",
                one.model,
                candidate.provider,
                candidate.gpu,
                recommendation.best.provider,
                recommendation.best.gpu
            );
            if candidate.costs.monthly_nanos == recommendation.best.costs.monthly_nanos {
                assert!(recommendation.best.nanos_per_second <= candidate.nanos_per_second);
            }
        }
        checked += 1;
    }
    assert!(checked > 500, "checked {checked} inputs");
}

#[test]
fn minimum_cost_ignores_the_balanced_bonuses() {
    let table = table();
    let selector = SmartProviderSelector::new(&table);
    // 7B at int4 needs 6.2 GB: everything fits, RunPod's T4 is the cheapest.
    let mut one = input(Modality::Llm, 7_000_000_000, Precision::Int4);
    one.budget = Budget::MinimumCost;
    one.latency = Latency::Critical;
    let cheapest = selector.select(&one, &all_available).unwrap();
    assert_eq!(
        (cheapest.best.provider.as_str(), cheapest.best.gpu.as_str()),
        ("runpod", "T4")
    );
    // A 24 GB model: the RTX bonus may move `balanced`, never `minimum_cost`.
    let mut one = input(Modality::Llm, 8_000_000_000, Precision::Fp16);
    one.budget = Budget::MinimumCost;
    let cheapest = selector.select(&one, &all_available).unwrap();
    assert_eq!(
        (cheapest.best.provider.as_str(), cheapest.best.gpu.as_str()),
        ("runpod", "L4")
    );
    one.budget = Budget::Balanced;
    one.latency = Latency::High;
    let balanced = selector.select(&one, &all_available).unwrap();
    assert_eq!(
        (balanced.best.provider.as_str(), balanced.best.gpu.as_str()),
        ("runpod", "RTX3090")
    );
}

#[test]
fn performance_prefers_h100_and_a100() {
    let table = table();
    let selector = SmartProviderSelector::new(&table);
    let mut checked = 0;
    for mut one in grid() {
        one.budget = Budget::Performance;
        let Ok(recommendation) = selector.select(&one, &all_available) else {
            continue;
        };
        let offered = recommendation
            .ranked
            .iter()
            .any(|candidate| is_h100(&candidate.gpu) || is_a100(&candidate.gpu));
        if offered {
            let gpu = &recommendation.best.gpu;
            assert!(is_h100(gpu) || is_a100(gpu), "{:?} picked {gpu}", one.model);
            checked += 1;
        }
    }
    assert!(checked > 500, "checked {checked} inputs");
}

#[test]
fn critical_latency_penalises_slow_cold_starts() {
    // Two providers at the same price: only the cold start differs.
    let text = r#"
effective_date = "2026-01-01"
[cold_start_ms.fast]
p50 = 300
p95 = 1500
p99 = 3000
[cold_start_ms.slow]
p50 = 9000
p95 = 60000
p99 = 90000
[provider.fast]
as_of = "2026-01-01"
source = "test"
scale_to_zero = true
max_gpus_per_worker = 8
[provider.slow]
as_of = "2026-01-01"
source = "test"
scale_to_zero = true
max_gpus_per_worker = 8
[[gpu]]
name = "L4"
vram_gb = 24
[gpu.per_second]
fast = "0.000200"
slow = "0.000180"
"#;
    let table = PriceTable::parse(text).unwrap();
    let selector = SmartProviderSelector::new(&table);
    let mut one = input(Modality::Llm, 1_000_000_000, Precision::Fp16);
    one.latency = Latency::High;
    let relaxed = selector.select(&one, &all_available).unwrap();
    assert_eq!(
        relaxed.best.provider, "slow",
        "cheaper wins when cold starts do not matter"
    );
    one.latency = Latency::Critical;
    let critical = selector.select(&one, &all_available).unwrap();
    assert_eq!(critical.best.provider, "fast");
    // The penalty grows with the latency need and with the cold start.
    let slow = ColdStart {
        p50: 9000,
        p95: 60000,
        p99: 90000,
    };
    let fast = ColdStart {
        p50: 300,
        p95: 1500,
        p99: 3000,
    };
    let penalties: Vec<f64> = Latency::ALL
        .iter()
        .map(|latency| latency_penalty(slow, *latency))
        .collect();
    assert!(
        penalties.windows(2).all(|pair| pair[0] >= pair[1]),
        "{penalties:?}"
    );
    assert!(latency_penalty(slow, Latency::Critical) > latency_penalty(fast, Latency::Critical));

    // On the real table a critical need never lands on a provider whose
    // cold starts take minutes while RunPod or Modal can serve the model.
    let table = self::table();
    let selector = SmartProviderSelector::new(&table);
    for mut one in grid() {
        one.latency = Latency::Critical;
        for budget in [Budget::Balanced, Budget::Performance] {
            one.budget = budget;
            let Ok(recommendation) = selector.select(&one, &all_available) else {
                continue;
            };
            let fast_possible = recommendation
                .ranked
                .iter()
                .any(|candidate| candidate.cold_start.p95 <= 6000);
            if fast_possible {
                assert!(
                    recommendation.best.cold_start.p95 <= 6000,
                    "{:?} {budget}: {}",
                    one.model,
                    recommendation.best.provider
                );
            }
        }
    }
}

#[test]
fn a_model_too_big_for_one_gpu_gets_a_multi_gpu_configuration() {
    let table = table();
    let selector = SmartProviderSelector::new(&table);
    let mut one = input(Modality::Llm, 70_000_000_000, Precision::Fp16);
    one.budget = Budget::MinimumCost;
    let recommendation = selector.select(&one, &all_available).unwrap();
    assert!(!recommendation.fits_single_gpu);
    assert!(recommendation.best.gpu_count >= 2);
    let total = f64::from(recommendation.best.gpu_vram_gb * recommendation.best.gpu_count);
    assert!(total * 0.9 >= recommendation.vram_required_gb);
    assert!(
        recommendation.reason.contains("no single GPU"),
        "{}",
        recommendation.reason
    );
    let json = recommendation.to_json();
    assert_eq!(json["configuration"]["fits_single_gpu"], false);
    assert_eq!(json["configuration"]["multi_gpu"], true);

    // Beyond 8 × 80 GB nothing fits, and the error says how much is needed.
    let huge = input(Modality::Llm, 1_000_000_000_000, Precision::Fp16);
    match selector.select(&huge, &all_available) {
        Err(SelectionError::NothingFits {
            required_gb,
            max_gpus,
        }) => {
            assert!(required_gb > 2000.0);
            assert_eq!(max_gpus, 8);
        }
        other => panic!("expected NothingFits, got {other:?}"),
    }
}

#[test]
fn unavailable_providers_rank_last_and_say_why() {
    let table = table();
    let selector = SmartProviderSelector::new(&table);
    let mut one = input(Modality::Llm, 7_000_000_000, Precision::Fp16);
    one.budget = Budget::MinimumCost;
    let only_modal =
        |provider: &str| (provider != "modal").then(|| format!("set the {provider} credentials"));
    let recommendation = selector.select(&one, &only_modal).unwrap();
    assert_eq!(recommendation.best.provider, "modal");
    assert!(recommendation.deployable);
    assert!(
        recommendation.reason.contains("unavailable"),
        "{}",
        recommendation.reason
    );
    let none = |provider: &str| Some(format!("{provider} is not configured"));
    let recommendation = selector.select(&one, &none).unwrap();
    assert!(!recommendation.deployable);
    assert_eq!(recommendation.best.provider, "runpod");
    assert!(recommendation.reason.contains("Not deployable here yet"));
}

#[test]
fn costs_are_exact_and_alternatives_explain_themselves() {
    let table = table();
    let selector = SmartProviderSelector::new(&table);
    let mut one = input(Modality::Llm, 1_000_000_000, Precision::Fp16);
    one.budget = Budget::MinimumCost;
    one.requests_per_day = 1000;
    one.avg_duration_ms = 2000;
    let recommendation = selector.select(&one, &all_available).unwrap();
    assert_eq!(
        (
            recommendation.best.provider.as_str(),
            recommendation.best.gpu.as_str()
        ),
        ("runpod", "T4")
    );
    // $0.000055/s × 2 s × 1000 requests × 30 days = $3.30, × 1.2 markup = $3.96.
    assert_eq!(recommendation.best.costs.monthly_nanos, 3_960_000_000);
    assert_eq!(recommendation.best.costs.per_request_nanos, 132_000);
    assert_eq!(recommendation.best.costs.per_hour_active_nanos, 237_600_000);
    assert_eq!(recommendation.alternatives.len(), 3);
    for alternative in &recommendation.alternatives {
        assert!(alternative
            .cost_difference(&recommendation.best)
            .starts_with('+'));
        assert!(!alternative.tradeoff(&recommendation.best).is_empty());
    }
    let json = recommendation.to_json();
    assert_eq!(json["provider"], "runpod");
    assert_eq!(json["gpu_type"], "T4");
    assert!((json["cost_estimates"]["monthly_estimate"].as_f64().unwrap() - 3.96).abs() < 1e-9);
    assert!(
        (json["cost_estimates"]["credits"]["monthly_estimate"]
            .as_f64()
            .unwrap()
            - 396.0)
            .abs()
            < 1e-6
    );
    assert_eq!(json["alternatives"].as_array().unwrap().len(), 3);
    assert_eq!(json["price_table"]["effective_date"], "2026-01-01");

    // Together keeps a replica running: its monthly cost is the full month.
    one.providers = vec!["together".to_owned()];
    let together = selector.select(&one, &all_available).unwrap();
    assert_eq!(together.best.gpu, "H100");
    assert_eq!(
        together.best.costs.monthly_nanos,
        1_108_333 * 86_400 * 30 * 12 / 10
    );
}

#[test]
fn a_forced_gpu_that_is_too_small_is_split_or_refused_clearly() {
    let table = table();
    let selector = SmartProviderSelector::new(&table);
    // 13B fp16 needs 33.2 GB: on T4s that takes 4 of them.
    let mut one = input(Modality::Llm, 13_000_000_000, Precision::Fp16);
    one.gpu = Some("T4".to_owned());
    let split = selector.select(&one, &all_available).unwrap();
    assert_eq!((split.best.gpu.as_str(), split.best.gpu_count), ("T4", 4));
    one.model.parameters = 1_000_000_000_000;
    let error = selector.select(&one, &all_available).unwrap_err();
    assert!(error.to_string().contains("on T4"), "{error}");
    one.gpu = Some("B300".to_owned());
    let error = selector.select(&one, &all_available).unwrap_err();
    assert!(error.to_string().contains("unknown GPU `B300`"), "{error}");
}
