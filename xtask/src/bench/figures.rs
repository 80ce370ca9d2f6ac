//! The figures the benchmark reports, computed from its boots: per-pair costs from
//! the icount boot, throughput and its ratios from the throughput boots.

use super::lines::{BenchBoot, VariantRun, VARIANTS};

/// The reference variant for "vs quickmap-window" ratios.
pub const WINDOW: &str = "quickmap-window";

/// Event counts per enter+access+remove pair.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EventsPerPair {
    /// Local TLB invalidations.
    pub invalidations: f64,
    /// Inter-processor interrupts.
    pub ipis: f64,
    /// Lock acquisitions.
    pub locks: f64,
    /// Page-table entry writes.
    pub pte_writes: f64,
}

impl EventsPerPair {
    /// The counts of `run` divided by its pairs.
    pub fn of(run: &VariantRun) -> EventsPerPair {
        let per_pair = |count: u64| count as f64 / run.pairs as f64;
        EventsPerPair {
            invalidations: per_pair(run.invalidations),
            ipis: per_pair(run.ipis),
            locks: per_pair(run.locks),
            pte_writes: per_pair(run.pte_writes),
        }
    }

    /// The larger of each count: the worst case over several boots.
    pub fn max(self, other: EventsPerPair) -> EventsPerPair {
        EventsPerPair {
            invalidations: self.invalidations.max(other.invalidations),
            ipis: self.ipis.max(other.ipis),
            locks: self.locks.max(other.locks),
            pte_writes: self.pte_writes.max(other.pte_writes),
        }
    }
}

/// Pairs per second: `pairs * tsc_hz / ticks` (ticks are the slowest CPU's).
pub fn pairs_per_second(run: &VariantRun, tsc_hz: u64) -> f64 {
    run.pairs as f64 * tsc_hz as f64 / run.ticks as f64
}

/// Instructions per pair in an icount boot: ticks per pair minus the empty loop's.
pub fn instructions_per_pair(run: &VariantRun, overhead_ticks_per_pair: u64) -> f64 {
    run.ticks as f64 / run.pairs as f64 - overhead_ticks_per_pair as f64
}

/// Everything reported about one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantFigures {
    /// The variant.
    pub name: String,
    /// From the icount boot.
    pub instructions_per_pair: f64,
    /// From the icount boot (1 CPU).
    pub events_icount: EventsPerPair,
    /// The worst per-pair counts over every boot (IPIs only show with 2+ CPUs).
    pub events_worst: EventsPerPair,
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

/// Computes every variant's figures. Both arguments are complete boots
/// ([`super::lines::BenchBootLines::complete`]), so every variant is present.
pub fn compute_figures(icount: &BenchBoot, throughput_boots: &[BenchBoot]) -> Vec<VariantFigures> {
    let overhead = icount.overhead_ticks_per_pair.unwrap_or(0);
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
            let counted = icount.variant(name)?;
            let events_icount = EventsPerPair::of(counted);
            let mut events_worst = events_icount;
            let mut throughput = Vec::new();
            for boot in throughput_boots {
                let Some(run) = boot.variant(name) else {
                    continue;
                };
                events_worst = events_worst.max(EventsPerPair::of(run));
                throughput.push((boot.info.cpus, pairs_per_second(run, boot.info.tsc_hz)));
            }
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
                instructions_per_pair: instructions_per_pair(counted, overhead),
                events_icount,
                events_worst,
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
    use crate::bench::lines::{BenchInfo, VariantRun};

    fn run(name: &str, cpus: u32, pairs: u64, ticks: u64, ipis: u64) -> VariantRun {
        VariantRun {
            name: name.into(),
            cpus,
            pairs,
            ticks,
            invalidations: pairs,
            ipis,
            locks: 0,
            pte_writes: 2 * pairs,
        }
    }

    fn boot(cpus: u32, icount: bool, runs: Vec<VariantRun>) -> BenchBoot {
        BenchBoot {
            info: BenchInfo {
                cpus,
                icount,
                tsc_hz: 1_000_000,
            },
            overhead_ticks_per_pair: icount.then_some(4),
            variants: runs,
        }
    }

    #[test]
    fn per_pair_and_throughput() {
        let r = run("x", 2, 1000, 50_000, 3000);
        assert_eq!(pairs_per_second(&r, 1_000_000), 20_000.0);
        assert_eq!(instructions_per_pair(&r, 4), 46.0);
        let events = EventsPerPair::of(&r);
        assert_eq!(
            (events.invalidations, events.ipis, events.pte_writes),
            (1.0, 3.0, 2.0)
        );
    }

    #[test]
    fn figures_scaling_and_ratios() {
        let icount = boot(
            1,
            true,
            vec![
                run("quickmap-window", 1, 100, 5_400, 0),
                run("shootdown-map", 1, 100, 90_400, 0),
            ],
        );
        let throughput = vec![
            boot(
                1,
                false,
                vec![
                    run("quickmap-window", 1, 1000, 10_000, 0),
                    run("shootdown-map", 1, 1000, 40_000, 0),
                ],
            ),
            boot(
                2,
                false,
                vec![
                    run("quickmap-window", 2, 2000, 10_000, 0),
                    run("shootdown-map", 2, 2000, 200_000, 2000),
                ],
            ),
        ];
        let figures = compute_figures(&icount, &throughput);
        assert_eq!(
            figures.len(),
            2,
            "variants absent from the icount boot are skipped"
        );
        let window = &figures[0];
        assert_eq!(window.name, "quickmap-window");
        assert_eq!(window.instructions_per_pair, 50.0);
        assert_eq!(window.throughput, [(1, 100_000.0), (2, 200_000.0)]);
        assert_eq!(window.scaling, [(1, 1.0), (2, 2.0)]);
        assert_eq!(window.vs_window, [(1, 1.0), (2, 1.0)]);
        let shootdown = &figures[1];
        assert_eq!(shootdown.instructions_per_pair, 900.0);
        assert_eq!(shootdown.throughput_at(2), Some(10_000.0));
        assert_eq!(lookup(&shootdown.vs_window, 1), Some(0.25));
        assert_eq!(lookup(&shootdown.vs_window, 2), Some(0.05));
        assert_eq!(lookup(&shootdown.vs_window, 4), None);
        assert_eq!(shootdown.events_icount.ipis, 0.0);
        assert_eq!(shootdown.events_worst.ipis, 1.0, "worst over boots");
    }

    #[test]
    fn no_single_cpu_boot_means_no_scaling() {
        let icount = boot(1, true, vec![run("quickmap-window", 1, 1, 10, 0)]);
        let figures = compute_figures(
            &icount,
            &[boot(4, false, vec![run("quickmap-window", 4, 4, 10, 0)])],
        );
        assert!(figures[0].scaling.is_empty());
        assert_eq!(figures[0].vs_window, [(4, 1.0)]);
    }
}
