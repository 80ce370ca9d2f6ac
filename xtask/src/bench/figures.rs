//! The figures the benchmark reports, computed from its boots: per-pair costs from
//! the icount boots (one per kernel build), throughput and its ratios from the
//! throughput boots (checked build).

use serde::Serialize;

use super::lines::{BenchBoot, VariantRun, VARIANTS};

/// The reference variant for "vs quickmap-window" ratios.
pub const WINDOW: &str = "quickmap-window";

/// Event counts per enter+access+remove pair. The four that quickmap's statistics
/// give are `None` where no boot counted them (a build without `stats`). Serialized as
/// in `bench.json`, `null` for `None`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct EventsPerPair {
    /// Local single-page TLB invalidations.
    pub invalidations: Option<f64>,
    /// Local full TLB flushes.
    pub full_flushes: Option<f64>,
    /// Page-table entry writes.
    pub pte_writes: Option<f64>,
    /// Enters that took back a window still mapping the page.
    pub reuses: Option<f64>,
    /// Inter-processor interrupts.
    pub ipis: f64,
    /// Lock acquisitions.
    pub locks: f64,
}

impl EventsPerPair {
    /// The counts of `run` divided by its pairs.
    pub fn of(run: &VariantRun) -> EventsPerPair {
        let per_pair = |count: u64| count as f64 / run.pairs as f64;
        let events = &run.events;
        EventsPerPair {
            invalidations: events.invalidations.map(per_pair),
            full_flushes: events.full_flushes.map(per_pair),
            pte_writes: events.pte_writes.map(per_pair),
            reuses: events.reuses.map(per_pair),
            ipis: per_pair(events.ipis),
            locks: per_pair(events.locks),
        }
    }

    /// The larger of each count: the worst case over several boots (a count one
    /// boot could not make does not hide another boot's).
    pub fn max(self, other: EventsPerPair) -> EventsPerPair {
        let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        EventsPerPair {
            invalidations: max(self.invalidations, other.invalidations),
            full_flushes: max(self.full_flushes, other.full_flushes),
            pte_writes: max(self.pte_writes, other.pte_writes),
            reuses: max(self.reuses, other.reuses),
            ipis: self.ipis.max(other.ipis),
            locks: self.locks.max(other.locks),
        }
    }
}

/// Pairs per second: `pairs * tsc_hz / ticks` (ticks are the slowest CPU's).
pub fn pairs_per_second(run: &VariantRun, tsc_hz: u64) -> f64 {
    run.pairs as f64 * tsc_hz as f64 / run.ticks as f64
}

/// Instructions per pair in an icount boot: ticks per pair minus the empty loop's,
/// to a hundredth of an instruction.
///
/// The ticks also hold a fixed cost per run (reading the TSC around the loop, the
/// loop's entry and exit: about a dozen instructions), which spread over the run's
/// 10^5 pairs adds some 0.0001 per pair: below the figure's resolution, so it is
/// rounded away instead of deciding a target that an exact count meets.
pub fn instructions_per_pair(run: &VariantRun, overhead_ticks_per_pair: u64) -> f64 {
    let per_pair = run.ticks as f64 / run.pairs as f64 - overhead_ticks_per_pair as f64;
    (per_pair * 100.0).round() / 100.0
}

/// A variant's cost in one kernel build, serialized as in `bench.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    /// From the build's icount boot.
    pub instructions_per_pair: f64,
    /// From the build's icount boot (1 CPU).
    #[serde(rename = "events_per_pair_icount")]
    pub events_icount: EventsPerPair,
    /// The worst per-pair counts over every boot of the build (IPIs only show with 2+
    /// CPUs).
    #[serde(rename = "events_per_pair_worst")]
    pub events_worst: EventsPerPair,
}

#[cfg(test)]
impl Cost {
    /// A cost whose icount boot's events are also the worst of every boot: what the
    /// report's tests need when they do not look at the difference.
    pub fn same_events(instructions_per_pair: f64, events: EventsPerPair) -> Cost {
        Cost {
            instructions_per_pair,
            events_icount: events,
            events_worst: events,
        }
    }
}

/// Everything reported about one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantFigures {
    /// The variant.
    pub name: String,
    /// In the checked build (the default features), which every boot but the lean
    /// icount boot runs.
    pub checked: Cost,
    /// In the lean build, if its icount boot ran and measured the variant.
    pub lean: Option<Cost>,
    /// `(cpus, pairs per second)` per throughput boot, in boot order.
    pub throughput: Vec<(u32, f64)>,
    /// `(cpus, throughput / throughput at 1 CPU)`; empty without a 1-CPU boot.
    pub scaling: Vec<(u32, f64)>,
    /// `(cpus, this variant's throughput / quickmap-window's)`.
    pub vs_window: Vec<(u32, f64)>,
}

impl VariantFigures {
    /// Throughput at `cpus`, if measured.
    pub fn throughput_at(&self, cpus: u32) -> Option<f64> {
        lookup(&self.throughput, cpus)
    }
}

/// The value for `cpus` in a `(cpus, value)` list.
pub fn lookup(values: &[(u32, f64)], cpus: u32) -> Option<f64> {
    values.iter().find(|(c, _)| *c == cpus).map(|(_, v)| *v)
}

/// The cost of `name` in one icount boot, with the worst events over `others` too.
fn cost(icount: &BenchBoot, others: &[BenchBoot], name: &str) -> Option<Cost> {
    let counted = icount.variant(name)?;
    let events_icount = EventsPerPair::of(counted);
    let events_worst = others
        .iter()
        .filter_map(|boot| boot.variant(name))
        .fold(events_icount, |worst, run| {
            worst.max(EventsPerPair::of(run))
        });
    Some(Cost {
        instructions_per_pair: instructions_per_pair(
            counted,
            icount.overhead_ticks_per_pair.unwrap_or(0),
        ),
        events_icount,
        events_worst,
    })
}

/// Computes every variant's figures: the checked icount boot decides which variants
/// appear; the lean icount boot, if any, adds their lean cost; the throughput boots
/// (checked build) their throughput and worst events. All are complete boots
/// ([`super::lines::BenchBootLines::complete`]).
pub fn compute_figures(
    checked_icount: &BenchBoot,
    lean_icount: Option<&BenchBoot>,
    throughput_boots: &[BenchBoot],
) -> Vec<VariantFigures> {
    let window_throughput: Vec<(u32, f64)> = throughput_boots
        .iter()
        .filter_map(|boot| {
            let run = boot.variant(WINDOW)?;
            Some((boot.info.cpus, pairs_per_second(run, boot.info.tsc_hz)))
        })
        .collect();
    VARIANTS
        .iter()
        .filter_map(|&name| {
            let checked = cost(checked_icount, throughput_boots, name)?;
            let lean = lean_icount.and_then(|boot| cost(boot, &[], name));
            let throughput: Vec<(u32, f64)> = throughput_boots
                .iter()
                .filter_map(|boot| {
                    let run = boot.variant(name)?;
                    Some((boot.info.cpus, pairs_per_second(run, boot.info.tsc_hz)))
                })
                .collect();
            let scaling = match lookup(&throughput, 1) {
                Some(base) if base > 0.0 => {
                    throughput.iter().map(|&(c, t)| (c, t / base)).collect()
                }
                _ => Vec::new(),
            };
            let vs_window = throughput
                .iter()
                .filter_map(|&(c, t)| Some((c, t / lookup(&window_throughput, c)?)))
                .collect();
            Some(VariantFigures {
                name: name.to_string(),
                checked,
                lean,
                throughput,
                scaling,
                vs_window,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::lines::{BenchInfo, EventCounts, VariantRun};
    use crate::kernel_build::KernelBuild;

    fn run(name: &str, cpus: u32, pairs: u64, ticks: u64, ipis: u64) -> VariantRun {
        VariantRun {
            name: name.into(),
            cpus,
            pairs,
            ticks,
            events: EventCounts {
                invalidations: Some(pairs),
                full_flushes: Some(0),
                pte_writes: Some(2 * pairs),
                reuses: Some(0),
                ipis,
                locks: 0,
            },
        }
    }

    fn boot(cpus: u32, icount: bool, build: KernelBuild, runs: Vec<VariantRun>) -> BenchBoot {
        BenchBoot {
            info: BenchInfo {
                cpus,
                icount,
                tsc_hz: 1_000_000,
                build,
            },
            overhead_ticks_per_pair: icount.then_some(4),
            variants: runs,
        }
    }

    #[test]
    fn per_pair_and_throughput() {
        let mut r = run("x", 2, 1000, 50_000, 3000);
        r.events.full_flushes = Some(250);
        assert_eq!(pairs_per_second(&r, 1_000_000), 20_000.0);
        assert_eq!(instructions_per_pair(&r, 4), 46.0);
        let fixed_cost = run("x", 0, 200_000, 8_000_012, 0);
        assert_eq!(
            instructions_per_pair(&fixed_cost, 7),
            33.0,
            "a dozen instructions per run are below the resolution"
        );
        let fraction = run("x", 0, 200_000, 8_100_000, 0);
        assert_eq!(instructions_per_pair(&fraction, 7), 33.5);
        let events = EventsPerPair::of(&r);
        assert_eq!(
            (events.invalidations, events.ipis, events.pte_writes),
            (Some(1.0), 3.0, Some(2.0))
        );
        assert_eq!(events.full_flushes, Some(0.25));
        r.events.invalidations = None;
        let uncounted = EventsPerPair::of(&r);
        assert_eq!(uncounted.invalidations, None);
        assert_eq!(
            uncounted.max(events).invalidations,
            Some(1.0),
            "a count one boot lacks comes from the others"
        );
    }

    #[test]
    fn figures_scaling_ratios_and_builds() {
        let checked = boot(
            1,
            true,
            KernelBuild::Checked,
            vec![
                run("quickmap-window", 1, 100, 5_400, 0),
                run("shootdown-map", 1, 100, 90_400, 0),
            ],
        );
        let mut lean_window = run("quickmap-window", 1, 100, 4_400, 0);
        lean_window.events.invalidations = None;
        let lean = boot(1, true, KernelBuild::Lean, vec![lean_window]);
        let throughput = vec![
            boot(
                1,
                false,
                KernelBuild::Checked,
                vec![
                    run("quickmap-window", 1, 1000, 10_000, 0),
                    run("shootdown-map", 1, 1000, 40_000, 0),
                ],
            ),
            boot(
                2,
                false,
                KernelBuild::Checked,
                vec![
                    run("quickmap-window", 2, 2000, 10_000, 0),
                    run("shootdown-map", 2, 2000, 200_000, 2000),
                ],
            ),
        ];
        let figures = compute_figures(&checked, Some(&lean), &throughput);
        assert_eq!(
            figures.len(),
            2,
            "variants absent from the checked icount boot are skipped"
        );
        let window = &figures[0];
        assert_eq!(window.name, "quickmap-window");
        assert_eq!(window.checked.instructions_per_pair, 50.0);
        let lean = window.lean.expect("measured in the lean boot");
        assert_eq!(lean.instructions_per_pair, 40.0);
        assert_eq!(lean.events_worst.invalidations, None);
        assert_eq!(window.throughput, [(1, 100_000.0), (2, 200_000.0)]);
        assert_eq!(window.scaling, [(1, 1.0), (2, 2.0)]);
        assert_eq!(window.vs_window, [(1, 1.0), (2, 1.0)]);
        let shootdown = &figures[1];
        assert_eq!(shootdown.checked.instructions_per_pair, 900.0);
        assert_eq!(shootdown.lean, None, "not in the lean boot");
        assert_eq!(shootdown.throughput_at(2), Some(10_000.0));
        assert_eq!(lookup(&shootdown.vs_window, 1), Some(0.25));
        assert_eq!(lookup(&shootdown.vs_window, 2), Some(0.05));
        assert_eq!(lookup(&shootdown.vs_window, 4), None);
        assert_eq!(shootdown.checked.events_icount.ipis, 0.0);
        assert_eq!(shootdown.checked.events_worst.ipis, 1.0, "worst over boots");
    }

    #[test]
    fn no_single_cpu_boot_means_no_scaling() {
        let icount = boot(
            1,
            true,
            KernelBuild::Checked,
            vec![run("quickmap-window", 1, 1, 10, 0)],
        );
        let figures = compute_figures(
            &icount,
            None,
            &[boot(
                4,
                false,
                KernelBuild::Checked,
                vec![run("quickmap-window", 4, 4, 10, 0)],
            )],
        );
        assert!(figures[0].scaling.is_empty());
        assert_eq!(figures[0].vs_window, [(4, 1.0)]);
        assert_eq!(figures[0].lean, None);
    }
}
