//! What `bench.json` holds: the configuration, every boot's raw figures, the derived
//! figures per variant, and the targets. Raw counts are kept so that figures can be
//! recomputed later without booting again.

use super::figures::{pairs_per_second, Cost, EventsPerPair, VariantFigures};
use super::lines::BenchBoot;
use super::targets::{TargetCheck, TargetStatus};
use crate::json::Json;

/// Identifies the layout, so that later tools can tell versions apart (2: two kernel
/// builds, full flushes and reuses, counts that may be `null`).
pub const SCHEMA: &str = "quickmap-bench/2";

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
    let count = |count: Option<u64>| count.map_or(Json::Null, Json::Int);
    let variants = boot
        .variants
        .iter()
        .map(|run| {
            let events = &run.events;
            Json::object([
                ("name", Json::str(&run.name)),
                ("cpus", Json::Int(run.cpus.into())),
                ("pairs", Json::Int(run.pairs)),
                ("ticks", Json::Int(run.ticks)),
                ("invalidations", count(events.invalidations)),
                ("full_flushes", count(events.full_flushes)),
                ("pte_writes", count(events.pte_writes)),
                ("reuses", count(events.reuses)),
                ("ipis", Json::Int(events.ipis)),
                ("locks", Json::Int(events.locks)),
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
        ("build", Json::str(boot.info.build.word())),
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
        ("invalidations", Json::number_or_null(events.invalidations)),
        ("full_flushes", Json::number_or_null(events.full_flushes)),
        ("pte_writes", Json::number_or_null(events.pte_writes)),
        ("reuses", Json::number_or_null(events.reuses)),
        ("ipis", Json::Number(events.ipis)),
        ("locks", Json::Number(events.locks)),
    ])
}

fn cost_json(cost: &Cost) -> Json {
    Json::object([
        (
            "instructions_per_pair",
            Json::Number(cost.instructions_per_pair),
        ),
        ("events_per_pair_icount", events_json(&cost.events_icount)),
        ("events_per_pair_worst", events_json(&cost.events_worst)),
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
        ("checked", cost_json(&f.checked)),
        ("lean", f.lean.as_ref().map_or(Json::Null, cost_json)),
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
    use crate::bench::lines::tests::{boot_text, counted};
    use crate::bench::lines::BenchBootLines;
    use crate::bench::targets::check_targets;
    use crate::kernel_build::KernelBuild;

    #[test]
    fn document_holds_raw_and_derived_figures() {
        let gather = |text: String, icount: bool, build: KernelBuild| {
            let mut lines = BenchBootLines::default();
            text.lines().for_each(|l| lines.observe(l));
            lines.complete(1, icount, build).unwrap()
        };
        let icount = gather(
            boot_text(1, true, KernelBuild::Checked, |_| {
                counted(100, 5000, 100, 0, 0, 200)
            }),
            true,
            KernelBuild::Checked,
        );
        let lean = gather(
            boot_text(1, true, KernelBuild::Lean, |_| {
                let (pairs, ticks, mut events) = counted(100, 4000, 0, 0, 0, 0);
                events.invalidations = None;
                events.pte_writes = None;
                events.full_flushes = None;
                events.reuses = None;
                (pairs, ticks, events)
            }),
            true,
            KernelBuild::Lean,
        );
        let one = gather(
            boot_text(1, false, KernelBuild::Checked, |_| {
                counted(1000, 1_000_000, 0, 0, 0, 0)
            }),
            false,
            KernelBuild::Checked,
        );
        let figures = compute_figures(&icount, Some(&lean), std::slice::from_ref(&one));
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
                label: "bench-lean-icount-cpus1".into(),
                kernel_cmdline: "mode=bench dmap=64 pairs=1000 icount=1".into(),
                boot: &lean,
            },
            BootEntry {
                label: "bench-cpus1".into(),
                kernel_cmdline: "mode=bench dmap=64 pairs=1000".into(),
                boot: &one,
            },
        ];
        let text = bench_document(&config, &boots, &figures, &targets).render();
        assert!(
            text.starts_with("{\n  \"schema\": \"quickmap-bench/2\",\n"),
            "{text}"
        );
        assert!(
            text.contains("\"pairs\": 1000,\n    \"seed\": null,"),
            "{text}"
        );
        assert!(text.contains("\"overhead_ticks_per_pair\": 5,"), "{text}");
        assert!(text.contains("\"build\": \"lean\","), "{text}");
        assert!(text.contains("\"instructions_per_pair\": 45,"), "{text}");
        assert!(text.contains("\"instructions_per_pair\": 35,"), "{text}");
        assert!(text.contains("\"invalidations\": null,"), "{text}");
        assert!(text.contains("\"pairs_per_second\": 1000000\n"), "{text}");
        assert!(text.contains("\"pairs_per_second\": {\n        \"1\": 1000000\n      }"));
        assert!(text.contains("\"status\": \"not measured\""), "{text}");
        assert!(
            text.contains("\"reason\": \"no 2-CPU throughput boot\""),
            "{text}"
        );
    }
}
