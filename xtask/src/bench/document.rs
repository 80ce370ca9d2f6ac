//! What `bench.json` holds: the configuration, every boot's raw figures, the derived
//! figures per variant, and the targets. Raw counts are kept so that figures can be
//! recomputed later without booting again.
//!
//! The document is serialized with serde: the figures' own types where their fields
//! are the document's ([`BenchConfig`], [`Cost`], the event counts), and a borrowed
//! view of each boot, variant and target where the document adds derived fields or
//! names things its own way.

use serde::{Serialize, Serializer};

use super::figures::{pairs_per_second, Cost, EventsPerPair, VariantFigures};
use super::lines::{BenchBoot, EventCounts, VariantRun};
use super::targets::{TargetCheck, TargetStatus};

/// Identifies the layout, so that later tools can tell versions apart (2: two kernel
/// builds, full flushes and reuses, counts that may be `null`).
pub const SCHEMA: &str = "quickmap-bench/2";

/// How the bench was run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// `bench.json`, borrowing from the figures it reports.
#[derive(Debug, Serialize)]
pub struct BenchDocument<'a> {
    schema: &'static str,
    config: &'a BenchConfig,
    boots: Vec<BootJson<'a>>,
    variants: Vec<VariantJson<'a>>,
    targets: Vec<TargetJson<'a>>,
}

impl BenchDocument<'_> {
    /// The document as pretty-printed JSON (two-space indent), ending in a newline.
    pub fn to_json(&self) -> String {
        // Serializing fails only on a map key that is not a string or a value that
        // refuses; the document has neither (NaN and infinities become `null`).
        let mut text = serde_json::to_string_pretty(self).expect("bench.json serializes");
        text.push('\n');
        text
    }
}

/// Gathers the document.
pub fn bench_document<'a>(
    config: &'a BenchConfig,
    boots: &'a [BootEntry],
    figures: &'a [VariantFigures],
    targets: &'a [TargetCheck],
) -> BenchDocument<'a> {
    BenchDocument {
        schema: SCHEMA,
        config,
        boots: boots.iter().map(BootJson::of).collect(),
        variants: figures.iter().map(VariantJson::of).collect(),
        targets: targets.iter().map(TargetJson::of).collect(),
    }
}

/// A boot: what the kernel reported about its machine, and each variant's counts.
#[derive(Debug, Serialize)]
struct BootJson<'a> {
    label: &'a str,
    kernel_cmdline: &'a str,
    build: &'static str,
    cpus: u32,
    icount: bool,
    tsc_hz: u64,
    overhead_ticks_per_pair: Option<u64>,
    variants: Vec<VariantRunJson<'a>>,
}

impl<'a> BootJson<'a> {
    fn of(entry: &'a BootEntry) -> BootJson<'a> {
        let info = &entry.boot.info;
        BootJson {
            label: &entry.label,
            kernel_cmdline: &entry.kernel_cmdline,
            build: info.build.word(),
            cpus: info.cpus,
            icount: info.icount,
            tsc_hz: info.tsc_hz,
            overhead_ticks_per_pair: entry.boot.overhead_ticks_per_pair,
            variants: entry
                .boot
                .variants
                .iter()
                .map(|run| VariantRunJson::of(run, info.tsc_hz))
                .collect(),
        }
    }
}

/// A variant in one boot: the raw counts, then per pair and per second.
#[derive(Debug, Serialize)]
struct VariantRunJson<'a> {
    name: &'a str,
    cpus: u32,
    pairs: u64,
    ticks: u64,
    #[serde(flatten)]
    events: &'a EventCounts,
    per_pair: EventsPerPair,
    pairs_per_second: f64,
}

impl<'a> VariantRunJson<'a> {
    fn of(run: &'a VariantRun, tsc_hz: u64) -> VariantRunJson<'a> {
        VariantRunJson {
            name: &run.name,
            cpus: run.cpus,
            pairs: run.pairs,
            ticks: run.ticks,
            events: &run.events,
            per_pair: EventsPerPair::of(run),
            pairs_per_second: pairs_per_second(run, tsc_hz),
        }
    }
}

/// A variant's derived figures over all boots.
#[derive(Debug, Serialize)]
struct VariantJson<'a> {
    name: &'a str,
    checked: &'a Cost,
    lean: Option<&'a Cost>,
    pairs_per_second: ByCpus<'a>,
    scaling_vs_1_cpu: ByCpus<'a>,
    ratio_to_quickmap_window: ByCpus<'a>,
}

impl<'a> VariantJson<'a> {
    fn of(figures: &'a VariantFigures) -> VariantJson<'a> {
        VariantJson {
            name: &figures.name,
            checked: &figures.checked,
            lean: figures.lean.as_ref(),
            pairs_per_second: ByCpus(&figures.throughput),
            scaling_vs_1_cpu: ByCpus(&figures.scaling),
            ratio_to_quickmap_window: ByCpus(&figures.vs_window),
        }
    }
}

/// `(cpus, value)` pairs as `{"1": value, "2": value}`: by CPU count, in order.
#[derive(Debug)]
struct ByCpus<'a>(&'a [(u32, f64)]);

impl Serialize for ByCpus<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(cpus, value)| (cpus.to_string(), value)))
    }
}

/// A target: the status as its word, and the reason when it could not be measured.
#[derive(Debug, Serialize)]
struct TargetJson<'a> {
    requirement: &'a str,
    status: &'static str,
    value: Option<f64>,
    limit: f64,
    measured: &'a str,
    reason: Option<&'a str>,
}

impl<'a> TargetJson<'a> {
    fn of(target: &'a TargetCheck) -> TargetJson<'a> {
        TargetJson {
            requirement: &target.requirement,
            status: target.status.word(),
            value: target.value,
            limit: target.limit,
            measured: &target.measured,
            reason: match &target.status {
                TargetStatus::NotMeasured(reason) => Some(reason),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

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
        let text = bench_document(&config, &boots, &figures, &targets).to_json();
        // Pretty-printed with two-space indents, schema first, a newline at the end.
        assert!(
            text.starts_with("{\n  \"schema\": \"quickmap-bench/2\",\n  \"config\": {\n"),
            "{text}"
        );
        assert!(text.ends_with("}\n"), "{text}");
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["config"],
            json!({
                "memory_mib": 2048,
                "dmap_mib": 64,
                "pairs": 1000,
                "seed": null,
                "throughput_cpus": [1],
            })
        );
        // Each boot's raw counts, with per-pair and per-second figures.
        let boots = doc["boots"].as_array().unwrap();
        assert_eq!(boots.len(), 3);
        assert_eq!(boots[0]["label"], "bench-icount-cpus1");
        assert_eq!(
            boots[0]["kernel_cmdline"],
            "mode=bench dmap=64 pairs=1000 icount=1"
        );
        assert_eq!(boots[0]["build"], "checked");
        assert_eq!(boots[0]["icount"], true);
        assert_eq!(boots[0]["overhead_ticks_per_pair"], 5);
        let run = &boots[0]["variants"][0];
        assert_eq!(run["name"], "direct-raw");
        assert_eq!(run["cpus"], 1);
        assert_eq!(run["pairs"], 100);
        assert_eq!(run["ticks"], 5000);
        assert_eq!(run["invalidations"], 100);
        assert_eq!(run["pte_writes"], 200);
        assert_eq!(run["per_pair"]["invalidations"], 1.0);
        assert_eq!(run["per_pair"]["pte_writes"], 2.0);
        assert_eq!(boots[1]["build"], "lean");
        let lean_run = &boots[1]["variants"][0];
        assert_eq!(lean_run["invalidations"], Value::Null);
        assert_eq!(lean_run["per_pair"]["invalidations"], Value::Null);
        assert_eq!(lean_run["per_pair"]["ipis"], 0.0);
        assert_eq!(boots[2]["icount"], false);
        assert_eq!(boots[2]["variants"][0]["pairs_per_second"], 1e6);
        // Each variant's derived figures, by build and by CPU count.
        let variant = &doc["variants"][0];
        assert_eq!(variant["name"], "direct-raw");
        assert_eq!(variant["checked"]["instructions_per_pair"], 45.0);
        assert_eq!(
            variant["checked"]["events_per_pair_icount"]["invalidations"],
            1.0
        );
        assert_eq!(
            variant["checked"]["events_per_pair_worst"]["invalidations"],
            1.0
        );
        assert_eq!(variant["lean"]["instructions_per_pair"], 35.0);
        assert_eq!(
            variant["lean"]["events_per_pair_icount"]["invalidations"],
            Value::Null
        );
        assert_eq!(variant["pairs_per_second"], json!({ "1": 1e6 }));
        assert_eq!(variant["scaling_vs_1_cpu"], json!({ "1": 1.0 }));
        assert_eq!(variant["ratio_to_quickmap_window"], json!({ "1": 1.0 }));
        // Targets: the status as a word, and why one could not be measured.
        let targets = doc["targets"].as_array().unwrap();
        assert_eq!(targets.len(), check_targets(&figures).len());
        let unmeasured = targets
            .iter()
            .find(|t| t["status"] == "not measured")
            .unwrap();
        assert_eq!(unmeasured["reason"], "no 2-CPU throughput boot");
        assert_eq!(unmeasured["value"], Value::Null);
        assert!(unmeasured["limit"].is_f64());
        assert!(unmeasured["requirement"].is_string());
        assert!(unmeasured["measured"].is_string());
        let measured = targets.iter().find(|t| t["status"] != "not measured");
        assert_eq!(measured.unwrap()["reason"], Value::Null);
    }
}
