//! Parses the lines of a `mode=bench` boot (`docs/kernel-protocol.md`, "mode=bench:
//! the benchmark") and gathers one boot's results.

use serde::Serialize;

use crate::fields::Fields;
use crate::kernel_build::KernelBuild;
use crate::protocol::{parse_line, protocol_body};

/// Every variant the kernel measures, in the order tables show them.
pub const VARIANTS: [&str; 21] = [
    "direct-raw",
    "quickmap-window",
    "quickmap-direct",
    "quickmap-guard",
    "quickmap-guard-direct",
    "quickmap-nested2",
    "quickmap-nested4",
    "deferred-window",
    "deferred-pool",
    "global-lock-window",
    "shootdown-map",
    "shootdown-broadcast",
    "zero-page-quickmap",
    "zero-page-direct",
    "copy-page-quickmap",
    "copy-page-direct",
    "local-window",
    "local-guard",
    "local-switch0",
    "local-switch1",
    "local-switch4",
];

/// The variants of the kernel's deferred quickmap instance, which it sets up (and
/// measures) only on machines with at most [`DEFERRED_MAX_CPUS`] CPUs.
pub const DEFERRED_VARIANTS: [&str; 2] = ["deferred-window", "deferred-pool"];

/// The variants only kernels of an architecture with a broadcast invalidation
/// (aarch64's `tlbi vale1is`) measure: optional in every boot.
pub const BROADCAST_VARIANTS: [&str; 1] = ["shootdown-broadcast"];

/// `qmk::vm::quick::DEFERRED_MAX_CPUS`.
pub const DEFERRED_MAX_CPUS: u32 = 8;

/// The variants a complete boot on `cpus` CPUs reports.
pub fn expected_variants(cpus: u32) -> impl Iterator<Item = &'static str> {
    VARIANTS
        .into_iter()
        .filter(move |v| cpus <= DEFERRED_MAX_CPUS || !DEFERRED_VARIANTS.contains(v))
        .filter(|v| !BROADCAST_VARIANTS.contains(v))
}

/// One line of the bench protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchLine {
    /// `qmk: bench-info cpus=N icount=0|1 tsc_hz=HZ build=checked|lean`.
    Info(BenchInfo),
    /// `qmk: bench overhead ticks_per_pair=N`.
    Overhead {
        /// Ticks of the empty loop per pair.
        ticks_per_pair: u64,
    },
    /// `qmk: bench VARIANT cpus=N pairs=N ticks=N ...`.
    Variant(VariantRun),
    /// `qmk: bench done`.
    Done,
}

/// The machine a bench boot ran on, as the kernel saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchInfo {
    /// CPUs taking part.
    pub cpus: u32,
    /// Whether one TSC tick is one guest instruction.
    pub icount: bool,
    /// TSC frequency.
    pub tsc_hz: u64,
    /// Which kernel build ran.
    pub build: KernelBuild,
}

/// One variant's measurement in one boot: totals as the kernel counted them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantRun {
    /// The variant (one of [`VARIANTS`], or one this xtask does not know yet).
    pub name: String,
    /// CPUs that ran it.
    pub cpus: u32,
    /// Pairs done, all CPUs together.
    pub pairs: u64,
    /// TSC ticks the slowest CPU took for its share.
    pub ticks: u64,
    /// Event counts, all CPUs.
    pub events: EventCounts,
}

/// The event counts of one variant line. The four that quickmap's statistics give are
/// `None` when the kernel could not count them (`-`: a build without `stats`).
/// Serialized as in `bench.json`, `null` for `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    /// Local single-page TLB invalidations.
    pub invalidations: Option<u64>,
    /// Local full TLB flushes.
    pub full_flushes: Option<u64>,
    /// Page-table entry writes that map a page.
    pub pte_writes: Option<u64>,
    /// Enters that took back a window still mapping the page.
    pub reuses: Option<u64>,
    /// Inter-processor interrupts sent.
    pub ipis: u64,
    /// Lock acquisitions.
    pub locks: u64,
}

/// A count field: a number, or `-` for "not counted". `None` when absent or neither.
fn count(fields: &Fields, key: &str) -> Option<Option<u64>> {
    match fields.get(key)? {
        "-" => Some(None),
        value => Some(Some(value.parse().ok()?)),
    }
}

/// Parses one serial line; `None` if it is not a bench protocol line.
pub fn parse_bench_line(line: &str) -> Option<BenchLine> {
    let body = protocol_body(line)?.trim_end();
    if let Some(rest) = body.strip_prefix("bench-info ") {
        let fields = Fields::parse(rest);
        return Some(BenchLine::Info(BenchInfo {
            cpus: fields.number("cpus")?.try_into().ok()?,
            icount: match fields.get("icount")? {
                "1" => true,
                "0" => false,
                _ => return None,
            },
            tsc_hz: fields.number("tsc_hz")?,
            build: KernelBuild::from_word(fields.get("build")?)?,
        }));
    }
    let rest = body.strip_prefix("bench ")?;
    if rest == "done" {
        return Some(BenchLine::Done);
    }
    if let Some(overhead) = rest.strip_prefix("overhead ") {
        return Some(BenchLine::Overhead {
            ticks_per_pair: Fields::parse(overhead).number("ticks_per_pair")?,
        });
    }
    let (name, counts) = rest.split_once(' ')?;
    let fields = Fields::parse(counts);
    Some(BenchLine::Variant(VariantRun {
        name: name.to_string(),
        cpus: fields.number("cpus")?.try_into().ok()?,
        pairs: fields.number("pairs")?,
        ticks: fields.number("ticks")?,
        events: EventCounts {
            invalidations: count(&fields, "invalidations")?,
            full_flushes: count(&fields, "full_flushes")?,
            pte_writes: count(&fields, "pte_writes")?,
            reuses: count(&fields, "reuses")?,
            ipis: fields.number("ipis")?,
            locks: fields.number("locks")?,
        },
    }))
}

/// What one bench boot reported, gathered line by line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BenchBootLines {
    /// The `bench-info` line.
    pub info: Option<BenchInfo>,
    /// The `bench overhead` line.
    pub overhead_ticks_per_pair: Option<u64>,
    /// Variant lines, in arrival order.
    pub variants: Vec<VariantRun>,
    /// `bench done` seen.
    pub done: bool,
    /// The first PANIC/EXCEPTION/error line, to explain a failed boot.
    pub crash: Option<String>,
}

impl BenchBootLines {
    /// Takes note of one serial line.
    pub fn observe(&mut self, line: &str) {
        match parse_bench_line(line) {
            Some(BenchLine::Info(info)) => self.info = Some(info),
            Some(BenchLine::Overhead { ticks_per_pair }) => {
                self.overhead_ticks_per_pair = Some(ticks_per_pair);
            }
            Some(BenchLine::Variant(run)) => self.variants.push(run),
            Some(BenchLine::Done) => self.done = true,
            None => {
                if let Some(crash) = parse_line(line).and_then(|l| l.failure_report()) {
                    self.crash.get_or_insert(crash);
                }
            }
        }
    }

    /// Checks the boot is complete: info present (with the CPUs, icount and build
    /// asked), every variant of [`expected_variants`] measured with pairs and ticks,
    /// `bench done`, and for an icount boot the overhead line. The error is one line.
    pub fn complete(
        self,
        expect_cpus: u32,
        expect_icount: bool,
        expect_build: KernelBuild,
    ) -> Result<BenchBoot, String> {
        let info = self.info.ok_or("no `qmk: bench-info` line")?;
        if info.build != expect_build {
            return Err(format!(
                "the kernel reports build={} but this boot ran the {} kernel",
                info.build.word(),
                expect_build.word()
            ));
        }
        if info.cpus != expect_cpus {
            return Err(format!(
                "the kernel reports cpus={} but the machine has {expect_cpus}",
                info.cpus
            ));
        }
        if info.icount != expect_icount {
            return Err(format!(
                "the kernel reports icount={} but this boot {} icount",
                u8::from(info.icount),
                if expect_icount {
                    "asked for"
                } else {
                    "ran without"
                }
            ));
        }
        if info.tsc_hz == 0 {
            return Err("`bench-info` reports tsc_hz=0".into());
        }
        let missing: Vec<&str> = expected_variants(info.cpus)
            .filter(|v| !self.variants.iter().any(|run| run.name == *v))
            .collect();
        if !missing.is_empty() {
            return Err(format!("variant(s) missing: {}", missing.join(", ")));
        }
        if let Some(empty) = self.variants.iter().find(|r| r.pairs == 0 || r.ticks == 0) {
            return Err(format!(
                "variant {} reports pairs={} ticks={} (both must be positive)",
                empty.name, empty.pairs, empty.ticks
            ));
        }
        if !self.done {
            return Err("no `qmk: bench done` line".into());
        }
        if expect_icount && self.overhead_ticks_per_pair.is_none() {
            return Err("no `qmk: bench overhead` line in the icount boot".into());
        }
        Ok(BenchBoot {
            info,
            overhead_ticks_per_pair: self.overhead_ticks_per_pair,
            variants: self.variants,
        })
    }
}

/// A complete bench boot.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchBoot {
    /// The machine.
    pub info: BenchInfo,
    /// Empty-loop ticks per pair (icount boot).
    pub overhead_ticks_per_pair: Option<u64>,
    /// Every variant's measurement.
    pub variants: Vec<VariantRun>,
}

impl BenchBoot {
    /// The measurement of `variant`, if present (the first one, if repeated).
    pub fn variant(&self, variant: &str) -> Option<&VariantRun> {
        self.variants.iter().find(|run| run.name == variant)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One variant's figures in a test boot: pairs, ticks and the event counts.
    pub type Figures = (u64, u64, EventCounts);

    /// The lines of a complete boot of `build`, with per-variant figures from `figures`.
    pub fn boot_text(
        cpus: u32,
        icount: bool,
        build: KernelBuild,
        figures: impl Fn(&str) -> Figures,
    ) -> String {
        let mut text = format!(
            "qmk: bench-info cpus={cpus} icount={} tsc_hz=1000000000 build={}\n",
            u8::from(icount),
            build.word()
        );
        if icount {
            text.push_str("qmk: bench overhead ticks_per_pair=5\n");
        }
        let shown = |count: Option<u64>| count.map_or("-".to_string(), |c| c.to_string());
        for variant in expected_variants(cpus) {
            let (pairs, ticks, events) = figures(variant);
            text.push_str(&format!(
                "qmk: bench {variant} cpus={cpus} pairs={pairs} ticks={ticks} \
                 invalidations={} ipis={} locks={} pte_writes={} full_flushes={} reuses={}\n",
                shown(events.invalidations),
                events.ipis,
                events.locks,
                shown(events.pte_writes),
                shown(events.full_flushes),
                shown(events.reuses)
            ));
        }
        text.push_str("qmk: bench done\n");
        text
    }

    /// Figures with every count known (no full flushes, no reuses).
    pub fn counted(pairs: u64, ticks: u64, inv: u64, ipis: u64, locks: u64, ptes: u64) -> Figures {
        let events = EventCounts {
            invalidations: Some(inv),
            full_flushes: Some(0),
            pte_writes: Some(ptes),
            reuses: Some(0),
            ipis,
            locks,
        };
        (pairs, ticks, events)
    }

    fn gather(text: &str) -> BenchBootLines {
        let mut lines = BenchBootLines::default();
        text.lines().for_each(|line| lines.observe(line));
        lines
    }

    #[test]
    fn lines() {
        assert_eq!(
            parse_bench_line("qmk: bench-info cpus=2 icount=0 tsc_hz=2000000000 build=lean\r"),
            Some(BenchLine::Info(BenchInfo {
                cpus: 2,
                icount: false,
                tsc_hz: 2_000_000_000,
                build: KernelBuild::Lean,
            }))
        );
        assert_eq!(
            parse_bench_line("qmk: bench overhead ticks_per_pair=7"),
            Some(BenchLine::Overhead { ticks_per_pair: 7 })
        );
        assert_eq!(parse_bench_line("qmk: bench done"), Some(BenchLine::Done));
        assert_eq!(
            parse_bench_line(
                "qmk: bench shootdown-map cpus=4 pairs=400 ticks=9000 invalidations=1600 \
                 ipis=1200 locks=400 pte_writes=800 full_flushes=0 reuses=0"
            ),
            Some(BenchLine::Variant(VariantRun {
                name: "shootdown-map".into(),
                cpus: 4,
                pairs: 400,
                ticks: 9000,
                events: EventCounts {
                    invalidations: Some(1600),
                    full_flushes: Some(0),
                    pte_writes: Some(800),
                    reuses: Some(0),
                    ipis: 1200,
                    locks: 400,
                },
            }))
        );
        let Some(BenchLine::Variant(lean)) = parse_bench_line(
            "qmk: bench quickmap-guard cpus=1 pairs=10 ticks=500 invalidations=- ipis=0 \
             locks=0 pte_writes=- full_flushes=- reuses=-",
        ) else {
            panic!("a lean line with uncounted events parses");
        };
        assert_eq!(
            lean.events,
            EventCounts {
                invalidations: None,
                full_flushes: None,
                pte_writes: None,
                reuses: None,
                ipis: 0,
                locks: 0,
            }
        );
        for junk in [
            "qmk: bench-info cpus=2 icount=2 tsc_hz=1 build=checked",
            "qmk: bench-info cpus=2 icount=0 tsc_hz=1",
            "qmk: bench-info cpus=2 icount=0 tsc_hz=1 build=custom",
            "qmk: bench x cpus=1 pairs=1",
            "qmk: bench x cpus=1 pairs=1 ticks=1 invalidations=0 ipis=0 locks=0 pte_writes=0",
            "qmk: bench x cpus=1 pairs=1 ticks=1 invalidations=0 ipis=- locks=0 pte_writes=0 \
             full_flushes=0 reuses=0",
            "qmk: bench x cpus=1 pairs=1 ticks=1 invalidations=x ipis=0 locks=0 pte_writes=0 \
             full_flushes=0 reuses=0",
            "qmk: bench overhead",
            "qmk: benchmark done",
            "qmk: test a ... ok",
        ] {
            assert_eq!(parse_bench_line(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_complete_boot() {
        let text = boot_text(1, true, KernelBuild::Checked, |_| {
            counted(100, 1000, 1, 0, 0, 2)
        });
        let boot = gather(&text)
            .complete(1, true, KernelBuild::Checked)
            .unwrap();
        // The x86_64 kernel has no broadcast invalidation to measure.
        assert_eq!(boot.variants.len(), VARIANTS.len() - 1);
        assert_eq!(boot.overhead_ticks_per_pair, Some(5));
        assert_eq!(boot.variant("quickmap-window").unwrap().ticks, 1000);
        assert_eq!(boot.info.build, KernelBuild::Checked);
    }

    #[test]
    fn machines_beyond_the_deferred_instance_report_no_deferred_variants() {
        assert_eq!(expected_variants(8).count(), VARIANTS.len() - 1);
        let sixteen: Vec<&str> = expected_variants(16).collect();
        assert_eq!(sixteen.len(), VARIANTS.len() - 3);
        assert!(!sixteen.contains(&"deferred-window"), "{sixteen:?}");
        let text = boot_text(16, false, KernelBuild::Checked, |_| {
            counted(1, 1, 0, 0, 0, 0)
        });
        assert!(!text.contains("deferred"), "{text}");
        let boot = gather(&text).complete(16, false, KernelBuild::Checked);
        assert!(boot.is_ok(), "{boot:?}");
    }

    #[test]
    fn incomplete_boots_say_why() {
        let good = boot_text(2, false, KernelBuild::Checked, |_| {
            counted(100, 1000, 1, 0, 0, 2)
        });
        let without = |needle: &str| {
            let text: Vec<&str> = good.lines().filter(|l| !l.contains(needle)).collect();
            gather(&text.join("\n"))
                .complete(2, false, KernelBuild::Checked)
                .unwrap_err()
        };
        assert_eq!(
            without("bench shootdown-map"),
            "variant(s) missing: shootdown-map"
        );
        assert_eq!(
            without("bench deferred-pool"),
            "variant(s) missing: deferred-pool"
        );
        assert_eq!(without("bench done"), "no `qmk: bench done` line");
        assert_eq!(without("bench-info"), "no `qmk: bench-info` line");
        assert_eq!(
            gather(&good)
                .complete(4, false, KernelBuild::Checked)
                .unwrap_err(),
            "the kernel reports cpus=2 but the machine has 4"
        );
        assert_eq!(
            gather(&good)
                .complete(2, true, KernelBuild::Checked)
                .unwrap_err(),
            "the kernel reports icount=0 but this boot asked for icount"
        );
        assert_eq!(
            gather(&good)
                .complete(2, false, KernelBuild::Lean)
                .unwrap_err(),
            "the kernel reports build=checked but this boot ran the lean kernel"
        );
        let zero = boot_text(1, false, KernelBuild::Checked, |_| {
            counted(0, 1000, 0, 0, 0, 0)
        });
        assert!(gather(&zero)
            .complete(1, false, KernelBuild::Checked)
            .unwrap_err()
            .contains("pairs=0 ticks=1000"));
        let no_overhead = boot_text(1, true, KernelBuild::Lean, |_| counted(1, 1, 0, 0, 0, 0))
            .replace("qmk: bench overhead ticks_per_pair=5\n", "");
        assert_eq!(
            gather(&no_overhead)
                .complete(1, true, KernelBuild::Lean)
                .unwrap_err(),
            "no `qmk: bench overhead` line in the icount boot"
        );
        let mut crashed = gather("qmk: PANIC: boom at x.rs:1\nqmk: error: later");
        assert_eq!(
            crashed.crash.take().as_deref(),
            Some("PANIC: boom at x.rs:1")
        );
    }
}
