//! What `bench.json` holds: the configuration, every boot's raw figures, the derived
//! figures per variant, and the targets. Raw counts are kept so that figures can be
//! recomputed later without booting again.

use super::figures::{pairs_per_second, EventsPerPair, VariantFigures};
use super::lines::BenchBoot;
use super::targets::{TargetCheck, TargetStatus};
use crate::json::Json;

/// Identifies the layout, so that later tools can tell versions apart.
pub const SCHEMA: &str = "quickmap-bench/1";

/// How the bench was run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// Guest memory.
    pub memory_mib: u32,
    /// Direct map.
    pub dmap_mib: u32,
    /// `pairs=`, if given.
    pub pairs: Option<u64>,
    /// `seed=`, if given.
    pub seed: Option<u64>,
    /// CPU counts of the throughput boots.
    pub throughput_cpus: Vec<u32>,
}

/// One boot as it goes into the document.
#[derive(Debug, Clone)]
pub struct BootEntry<'a> {
    /// The boot's label (also its serial log's name).
    pub label: String,
    /// The kernel command line.
    pub kernel_cmdline: String,
    /// What it reported.
    pub boot: &'a BenchBoot,
}

/// The whole document.
pub fn bench_document(
    config: &BenchConfig,
    boots: &[BootEntry],
    figures: &[VariantFigures],
    targets: &[TargetCheck],
) -> Json {
    Json::object([
        ("schema", Json::str(SCHEMA)),
        (
            "config",
            Json::object([
                ("memory_mib", Json::Int(config.memory_mib.into())),
                ("dmap_mib", Json::Int(config.dmap_mib.into())),
                ("pairs", config.pairs.map_or(Json::Null, Json::Int)),
                ("seed", config.seed.map_or(Json::Null, Json::Int)),
                (
                    "throughput_cpus",
                    Json::Array(
                        config
                            .throughput_cpus
                            .iter()
                            .map(|&c| Json::Int(c.into()))
                            .collect(),
                    ),
                ),
            ]),
        ),
        ("boots", Json::Array(boots.iter().map(boot_json).collect())),
        (
            "variants",
            Json::Array(figures.iter().map(variant_json).collect()),
        ),
        (
            "targets",
            Json::Array(targets.iter().map(target_json).collect()),
        ),
    ])
}

fn boot_json(entry: &BootEntry) -> Json {
    let boot = entry.boot;
    let variants = boot
        .variants
        .iter()
        .map(|run| {
            Json::object([
                ("name", Json::str(&run.name)),
                ("cpus", Json::Int(run.cpus.into())),
                ("pairs", Json::Int(run.pairs)),
                ("ticks", Json::Int(run.ticks)),
                ("invalidations", Json::Int(run.invalidations)),
                ("ipis", Json::Int(run.ipis)),
                ("locks", Json::Int(run.locks)),
                ("pte_writes", Json::Int(run.pte_writes)),
                ("per_pair", events_json(&EventsPerPair::of(run))),
                (
                    "pairs_per_second",
                    Json::Number(pairs_per_second(run, boot.info.tsc_hz)),
                ),
            ])
        })
        .collect();
    Json::object([
        ("label", Json::str(&entry.label)),
        ("kernel_cmdline", Json::str(&entry.kernel_cmdline)),
        ("cpus", Json::Int(boot.info.cpus.into())),
        ("icount", Json::Bool(boot.info.icount)),
        ("tsc_hz", Json::Int(boot.info.tsc_hz)),
        (
            "overhead_ticks_per_pair",
            boot.overhead_ticks_per_pair.map_or(Json::Null, Json::Int),
        ),
        ("variants", Json::Array(variants)),
    ])
}

fn events_json(events: &EventsPerPair) -> Json {
    Json::object([
        ("invalidations", Json::Number(events.invalidations)),
        ("ipis", Json::Number(events.ipis)),
        ("locks", Json::Number(events.locks)),
        ("pte_writes", Json::Number(events.pte_writes)),
    ])
}

/// `{"1": value, "2": value}`: by CPU count.
fn by_cpus(values: &[(u32, f64)]) -> Json {
    Json::object(
        values
            .iter()
            .map(|&(cpus, value)| (cpus.to_string(), Json::Number(value))),
    )
}

fn variant_json(f: &VariantFigures) -> Json {
    Json::object([
        ("name", Json::str(&f.name)),
        (
            "instructions_per_pair",
            Json::Number(f.instructions_per_pair),
        ),
        ("events_per_pair_icount", events_json(&f.events_icount)),
        ("events_per_pair_worst", events_json(&f.events_worst)),
        ("pairs_per_second", by_cpus(&f.throughput)),
        ("scaling_vs_1_cpu", by_cpus(&f.scaling)),
        ("ratio_to_quickmap_window", by_cpus(&f.vs_window)),
    ])
}

fn target_json(t: &TargetCheck) -> Json {
    let reason = match &t.status {
        TargetStatus::NotMeasured(reason) => Json::str(reason),
        _ => Json::Null,
    };
    Json::object([
        ("requirement", Json::str(&t.requirement)),
        ("status", Json::str(t.status.word())),
        ("value", Json::number_or_null(t.value)),
        ("limit", Json::Number(t.limit)),
        ("measured", Json::str(&t.measured)),
        ("reason", reason),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figures::compute_figures;
    use crate::bench::lines::{tests::boot_text, BenchBootLines};
    use crate::bench::targets::check_targets;

    #[test]
    fn document_holds_raw_and_derived_figures() {
        let gather = |text: String, icount: bool| {
            let mut lines = BenchBootLines::default();
            text.lines().for_each(|l| lines.observe(l));
            lines.complete(1, icount).unwrap()
        };
        let icount = gather(boot_text(1, true, |_| [100, 5000, 100, 0, 0, 200]), true);
        let one = gather(
            boot_text(1, false, |_| [1000, 1_000_000, 0, 0, 0, 0]),
            false,
        );
        let figures = compute_figures(&icount, std::slice::from_ref(&one));
        let targets = check_targets(&figures);
        let config = BenchConfig {
            memory_mib: 2048,
            dmap_mib: 64,
            pairs: Some(1000),
            seed: None,
            throughput_cpus: vec![1],
        };
        let boots = [
            BootEntry {
                label: "bench-icount-cpus1".into(),
                kernel_cmdline: "mode=bench dmap=64 pairs=1000 icount=1".into(),
                boot: &icount,
            },
            BootEntry {
                label: "bench-cpus1".into(),
                kernel_cmdline: "mode=bench dmap=64 pairs=1000".into(),
                boot: &one,
            },
        ];
        let text = bench_document(&config, &boots, &figures, &targets).render();
        assert!(
            text.starts_with("{\n  \"schema\": \"quickmap-bench/1\",\n"),
            "{text}"
        );
        assert!(
            text.contains("\"pairs\": 1000,\n    \"seed\": null,"),
            "{text}"
        );
        assert!(text.contains("\"overhead_ticks_per_pair\": 5,"), "{text}");
        assert!(text.contains("\"instructions_per_pair\": 45,"), "{text}");
        assert!(text.contains("\"pairs_per_second\": 1000000\n"), "{text}");
        assert!(text.contains("\"pairs_per_second\": {\n        \"1\": 1000000\n      }"));
        assert!(text.contains("\"status\": \"not measured\""), "{text}");
        assert!(
            text.contains("\"reason\": \"no 2-CPU throughput boot\""),
            "{text}"
        );
    }
}
