//! The benchmark's targets (DESIGN.md §3.4, §6): each is met, missed, or could not be
//! judged because a boot it needs was not run (e.g. `--cpus 1,4` has no 2-CPU boot, or
//! no lean kernel was given next to a prebuilt checked one). Missing a target does not
//! fail the bench: it is a measurement, and the report says which targets were missed
//! and by how much.
//!
//! Instruction targets name their build: the lean kernel (no contract checks, no
//! statistics) for the guard path, the checked kernel (the default) for the
//! FreeBSD-named functions. Event targets are the worst over every boot that counted
//! them (the checked ones); throughput targets compare variants within this run.

use super::figures::{Cost, VariantFigures, WINDOW};

/// quickmap-window's instructions per pair beyond direct-raw's (the touch itself), in
/// the checked build.
pub const MAX_WINDOW_INSTRUCTIONS: f64 = 80.0;
/// quickmap-window's invalidations per pair.
pub const MAX_WINDOW_INVALIDATIONS: f64 = 1.0;
/// quickmap-direct's instructions per pair beyond direct-raw's (checked build), and
/// quickmap-guard-direct's (lean build).
pub const MAX_DIRECT_EXTRA_INSTRUCTIONS: f64 = 10.0;
/// quickmap-guard's instructions per pair beyond direct-raw's, in the lean build.
pub const MAX_GUARD_INSTRUCTIONS: f64 = 40.0;
/// How many more instructions per pair than global-lock-window quickmap-guard may take
/// in the lean build.
pub const MAX_GUARD_OVER_GLOBAL_LOCK: f64 = 10.0;
/// The guard path.
pub const GUARD: &str = "quickmap-guard";
/// The deferred instance over distinct pages.
pub const DEFERRED: &str = "deferred-window";
/// The deferred instance over a recurring pool.
pub const POOL: &str = "deferred-pool";
/// The global locked window.
pub const GLOBAL_LOCK: &str = "global-lock-window";
/// deferred-window's invalidating operations (invalidations + full flushes) per pair:
/// one full flush per 32 windows.
pub const MAX_DEFERRED_INVALIDATING: f64 = 1.0 / 32.0;
/// deferred-window's throughput on 1 CPU over quickmap-window's.
pub const MIN_DEFERRED_OVER_WINDOW: f64 = 3.0;
/// deferred-window's throughput on 2 CPUs over 1 CPU: near-linear scaling.
pub const MIN_DEFERRED_SCALING_2: f64 = 1.8;
/// How many times slower the serialising designs must be than quickmap.
pub const MIN_SLOWDOWN: f64 = 5.0;
/// The CPU counts at which shootdown-map is compared with quickmap-window.
pub const SHOOTDOWN_CPUS: [u32; 2] = [2, 4];
/// The CPU count at which global-lock-window is compared with deferred-window.
pub const GLOBAL_LOCK_CPUS: u32 = 4;
/// The local mappings' safe API (Linux's `kmap_local_page`/`kunmap_local`).
pub const LOCAL: &str = "local-guard";
/// local-guard's instructions per pair beyond the touch, in the checked build: Linux's
/// `kmap_local_page` takes about 270 on high memory.
pub const MAX_LOCAL_INSTRUCTIONS: f64 = 120.0;
/// Context switches between two threads that hold no local mappings.
pub const SWITCH_NONE_HELD: &str = "local-switch0";
/// Context switches between two threads that hold all their local mappings.
pub const SWITCH_ALL_HELD: &str = "local-switch4";
/// How many local mappings each thread of [`SWITCH_ALL_HELD`] holds.
pub const SWITCH_HELD: f64 = 4.0;
/// What a context switch costs more per local mapping the threads hold (one save at
/// switch-out, one restore at switch-in), in the checked build.
pub const MAX_SWITCH_PER_HELD_MAPPING: f64 = 100.0;

/// How a target came out.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetStatus {
    /// The figure is within the target.
    Met,
    /// It is not.
    Missed,
    /// The figure could not be computed; the reason says which boot is lacking.
    NotMeasured(String),
}

impl TargetStatus {
    /// The word tables and JSON use.
    pub fn word(&self) -> &'static str {
        match self {
            TargetStatus::Met => "met",
            TargetStatus::Missed => "missed",
            TargetStatus::NotMeasured(_) => "not measured",
        }
    }
}

/// One target and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetCheck {
    /// What is required, e.g. `quickmap-window: at most 80 instructions per pair ...`.
    pub requirement: String,
    /// The measured figure, with how it was computed.
    pub measured: String,
    /// The measured value (for the JSON), if any.
    pub value: Option<f64>,
    /// The limit it is compared with.
    pub limit: f64,
    /// The outcome.
    pub status: TargetStatus,
}

/// How a measured value must compare with its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    AtMost,
    AtLeast,
    Above,
}

/// A measured value and how it was computed, or why it could not be.
type Measured = Result<(f64, String), String>;

fn find<'a>(figures: &'a [VariantFigures], name: &str) -> Result<&'a VariantFigures, String> {
    figures
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| format!("no figures for {name}"))
}

/// A check of `value` against `limit`.
fn check(requirement: String, value: Measured, limit: f64, bound: Bound) -> TargetCheck {
    match value {
        Ok((value, measured)) => TargetCheck {
            requirement,
            measured,
            value: Some(value),
            limit,
            status: if match bound {
                Bound::AtMost => value <= limit,
                Bound::AtLeast => value >= limit,
                Bound::Above => value > limit,
            } {
                TargetStatus::Met
            } else {
                TargetStatus::Missed
            },
        },
        Err(reason) => TargetCheck {
            requirement,
            measured: "-".into(),
            value: None,
            limit,
            status: TargetStatus::NotMeasured(reason),
        },
    }
}

/// Which build's cost an instruction target reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    Checked,
    Lean,
}

impl Build {
    /// The build's name in a requirement.
    fn word(self) -> &'static str {
        match self {
            Build::Checked => "checked",
            Build::Lean => "lean",
        }
    }
}

/// What an instruction target counts a variant's extra instructions over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    /// direct-raw read as the page touch alone: the extra is what mapping costs.
    Touch,
    /// Another variant: the extra is what one design costs more than the other
    /// (direct-raw too, for the direct-map paths, which map nothing).
    Variant(&'static str),
}

impl Baseline {
    fn variant(self) -> &'static str {
        match self {
            Baseline::Touch => "direct-raw",
            Baseline::Variant(name) => name,
        }
    }

    /// How a requirement words it.
    fn words(self) -> String {
        match self {
            Baseline::Touch => "beyond the touch (direct-raw)".into(),
            Baseline::Variant(name) => format!("more than {name}"),
        }
    }
}

fn cost_in(figures: &[VariantFigures], name: &str, build: Build) -> Result<Cost, String> {
    let variant = find(figures, name)?;
    match build {
        Build::Checked => Ok(variant.checked),
        Build::Lean => variant
            .lean
            .ok_or_else(|| format!("no lean icount boot measured {name}")),
    }
}

/// `name`'s instructions per pair minus `base`'s, in `build`.
fn extra_instructions(
    figures: &[VariantFigures],
    name: &str,
    base: &str,
    build: Build,
) -> Measured {
    let variant = cost_in(figures, name, build)?.instructions_per_pair;
    let base_cost = cost_in(figures, base, build)?.instructions_per_pair;
    let extra = variant - base_cost;
    Ok((
        extra,
        format!("{extra:.1} ({name} {variant:.1} - {base} {base_cost:.1})"),
    ))
}

/// A per-pair event count of `name`, worst over the checked boots.
fn worst_event(
    figures: &[VariantFigures],
    name: &str,
    what: &str,
    pick: fn(&Cost) -> Option<f64>,
) -> Measured {
    let cost = cost_in(figures, name, Build::Checked)?;
    let value = pick(&cost).ok_or_else(|| format!("no boot counted {name}'s {what}"))?;
    Ok((value, format!("{value:.4} (worst over all boots)")))
}

/// `fast`'s throughput at `fast_cpus` over `slow`'s at `slow_cpus`.
fn throughput_ratio(
    figures: &[VariantFigures],
    (fast, fast_cpus): (&str, u32),
    (slow, slow_cpus): (&str, u32),
) -> Result<(f64, f64, f64), String> {
    let at = |name: &str, cpus: u32| {
        find(figures, name)?
            .throughput_at(cpus)
            .ok_or(format!("no {cpus}-CPU throughput boot"))
    };
    let (fast, slow) = (at(fast, fast_cpus)?, at(slow, slow_cpus)?);
    Ok((fast / slow, fast, slow))
}

/// Checks every target against `figures` (from [`super::figures::compute_figures`]).
pub fn check_targets(figures: &[VariantFigures]) -> Vec<TargetCheck> {
    let mut checks = Vec::new();

    // The target that `name`, in `build`, takes at most `limit` instructions per pair
    // more than `baseline`.
    let instruction_limit = |name: &str, build: Build, limit: f64, baseline: Baseline| {
        check(
            format!(
                "{name} ({} build): at most {limit} instructions per pair {}",
                build.word(),
                baseline.words()
            ),
            extra_instructions(figures, name, baseline.variant(), build),
            limit,
            Bound::AtMost,
        )
    };

    // The guard path, lean build.
    for (name, limit, baseline) in [
        (GUARD, MAX_GUARD_INSTRUCTIONS, Baseline::Touch),
        (
            GUARD,
            MAX_GUARD_OVER_GLOBAL_LOCK,
            Baseline::Variant(GLOBAL_LOCK),
        ),
        (
            "quickmap-guard-direct",
            MAX_DIRECT_EXTRA_INSTRUCTIONS,
            Baseline::Variant("direct-raw"),
        ),
    ] {
        checks.push(instruction_limit(name, Build::Lean, limit, baseline));
    }

    // The FreeBSD-named functions, checked build.
    checks.push(instruction_limit(
        WINDOW,
        Build::Checked,
        MAX_WINDOW_INSTRUCTIONS,
        Baseline::Touch,
    ));
    checks.push(check(
        format!("{WINDOW}: at most {MAX_WINDOW_INVALIDATIONS} invalidation per pair"),
        worst_event(figures, WINDOW, "invalidations", |c| {
            c.events_worst.invalidations
        }),
        MAX_WINDOW_INVALIDATIONS,
        Bound::AtMost,
    ));
    checks.push(check(
        format!("{WINDOW}: no IPIs"),
        worst_event(figures, WINDOW, "IPIs", |c| Some(c.events_worst.ipis)),
        0.0,
        Bound::AtMost,
    ));
    checks.push(check(
        format!("{WINDOW}: no locks"),
        worst_event(figures, WINDOW, "locks", |c| Some(c.events_worst.locks)),
        0.0,
        Bound::AtMost,
    ));
    checks.push(instruction_limit(
        "quickmap-direct",
        Build::Checked,
        MAX_DIRECT_EXTRA_INSTRUCTIONS,
        Baseline::Variant("direct-raw"),
    ));

    // The deferred instance.
    checks.push(check(
        format!(
            "{DEFERRED}: at most 1/{} invalidating operation (invalidations + full flushes) \
             per pair",
            (1.0 / MAX_DEFERRED_INVALIDATING).round()
        ),
        (|| {
            let cost = cost_in(figures, DEFERRED, Build::Checked)?;
            let events = cost.events_worst;
            let (Some(invalidations), Some(flushes)) = (events.invalidations, events.full_flushes)
            else {
                return Err(format!("no boot counted {DEFERRED}'s invalidations"));
            };
            let value = invalidations + flushes;
            Ok((
                value,
                format!(
                    "{value:.4} ({invalidations:.4} invalidations + {flushes:.4} full flushes, \
                     worst over all boots)"
                ),
            ))
        })(),
        MAX_DEFERRED_INVALIDATING,
        Bound::AtMost,
    ));
    checks.push(check(
        format!("{POOL}: no page-table entry writes in steady state"),
        worst_event(figures, POOL, "page-table entry writes", |c| {
            c.events_worst.pte_writes
        }),
        0.0,
        Bound::AtMost,
    ));

    // Throughput, within this run.
    // "2.00x (fast vs slow pairs/s)", or for a slowdown "5.0x slower (slow vs fast)".
    let ratio = |fast: (&str, u32), slow: (&str, u32), slowdown: bool| -> Measured {
        let (ratio, fast, slow) = throughput_ratio(figures, fast, slow)?;
        let measured = if slowdown {
            format!("{ratio:.1}x slower ({} vs {} pairs/s)", si(slow), si(fast))
        } else {
            format!("{ratio:.2}x ({} vs {} pairs/s)", si(fast), si(slow))
        };
        Ok((ratio, measured))
    };
    checks.push(check(
        format!("{DEFERRED}: throughput on 1 CPU at least {MIN_DEFERRED_OVER_WINDOW}x {WINDOW}'s"),
        ratio((DEFERRED, 1), (WINDOW, 1), false),
        MIN_DEFERRED_OVER_WINDOW,
        Bound::AtLeast,
    ));
    checks.push(check(
        format!("{DEFERRED}: throughput on 1 CPU above {GLOBAL_LOCK}'s"),
        ratio((DEFERRED, 1), (GLOBAL_LOCK, 1), false),
        1.0,
        Bound::Above,
    ));
    checks.push(check(
        format!("{DEFERRED}: throughput on 2 CPUs at least {MIN_DEFERRED_SCALING_2}x 1 CPU"),
        ratio((DEFERRED, 2), (DEFERRED, 1), false),
        MIN_DEFERRED_SCALING_2,
        Bound::AtLeast,
    ));
    checks.push(check(
        format!(
            "{GLOBAL_LOCK}: at least {MIN_SLOWDOWN}x slower than {DEFERRED} on \
             {GLOBAL_LOCK_CPUS} CPUs"
        ),
        ratio(
            (DEFERRED, GLOBAL_LOCK_CPUS),
            (GLOBAL_LOCK, GLOBAL_LOCK_CPUS),
            true,
        ),
        MIN_SLOWDOWN,
        Bound::AtLeast,
    ));
    for cpus in SHOOTDOWN_CPUS {
        checks.push(check(
            format!("shootdown-map: at least {MIN_SLOWDOWN}x slower than {WINDOW} on {cpus} CPUs"),
            ratio((WINDOW, cpus), ("shootdown-map", cpus), true),
            MIN_SLOWDOWN,
            Bound::AtLeast,
        ));
    }

    // Local mappings: the pair, and what holding them adds to a context switch.
    checks.push(instruction_limit(
        LOCAL,
        Build::Checked,
        MAX_LOCAL_INSTRUCTIONS,
        Baseline::Touch,
    ));
    checks.push(check(
        format!(
            "context switch: at most {MAX_SWITCH_PER_HELD_MAPPING} instructions more per local \
             mapping held ({SWITCH_ALL_HELD} over {SWITCH_NONE_HELD}, checked build)"
        ),
        switch_cost_per_held_mapping(figures),
        MAX_SWITCH_PER_HELD_MAPPING,
        Bound::AtMost,
    ));
    checks
}

/// The instructions a context switch takes more per local mapping each thread holds:
/// [`SWITCH_ALL_HELD`]'s per switch over [`SWITCH_NONE_HELD`]'s, over [`SWITCH_HELD`].
fn switch_cost_per_held_mapping(figures: &[VariantFigures]) -> Measured {
    let (extra, _) =
        extra_instructions(figures, SWITCH_ALL_HELD, SWITCH_NONE_HELD, Build::Checked)?;
    let none = cost_in(figures, SWITCH_NONE_HELD, Build::Checked)?.instructions_per_pair;
    let per_mapping = extra / SWITCH_HELD;
    Ok((
        per_mapping,
        format!(
            "{per_mapping:.1} ({SWITCH_ALL_HELD} {:.1} - {SWITCH_NONE_HELD} {none:.1} per switch, \
             over {SWITCH_HELD} held)",
            none + extra
        ),
    ))
}

/// A rate in SI units: `950`, `12.3k`, `4.56M`, `1.20G`.
pub fn si(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e9 {
        format!("{:.2}G", value / 1e9)
    } else if magnitude >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if magnitude >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figures::EventsPerPair;

    fn cost(instructions: f64) -> Cost {
        let events = EventsPerPair {
            invalidations: Some(1.0),
            full_flushes: Some(0.0),
            pte_writes: Some(1.0),
            reuses: Some(0.0),
            // No IPIs and no locks: quickmap's targets allow none.
            ..EventsPerPair::default()
        };
        Cost::same_events(instructions, events)
    }

    /// A variant with `checked` and `lean` instructions per pair.
    fn variant(name: &str, checked: f64, lean: f64, throughput: &[(u32, f64)]) -> VariantFigures {
        VariantFigures {
            name: name.into(),
            checked: cost(checked),
            lean: Some(cost(lean)),
            throughput: throughput.to_vec(),
            scaling: Vec::new(),
            vs_window: Vec::new(),
        }
    }

    /// Figures that meet every target exactly at its limit.
    fn good() -> Vec<VariantFigures> {
        let mut deferred = variant(DEFERRED, 150.0, 140.0, &[(1, 3e5), (2, 5.4e5), (4, 1e6)]);
        deferred.checked.events_worst.invalidations = Some(0.0);
        deferred.checked.events_worst.full_flushes = Some(1.0 / 32.0);
        let mut pool = variant(POOL, 120.0, 110.0, &[(1, 4e5)]);
        pool.checked.events_worst.pte_writes = Some(0.0);
        let local = [
            variant(LOCAL, 130.0, 100.0, &[(1, 1e5)]),
            variant(SWITCH_NONE_HELD, 1700.0, 1700.0, &[(1, 1e4)]),
            variant(SWITCH_ALL_HELD, 2100.0, 2000.0, &[(1, 1e4)]),
        ];
        vec![
            variant("direct-raw", 10.0, 10.0, &[(1, 1e6), (2, 2e6), (4, 4e6)]),
            variant(WINDOW, 90.0, 70.0, &[(1, 1e5), (2, 1.9e5), (4, 3.8e5)]),
            variant("quickmap-direct", 20.0, 15.0, &[(1, 5e5)]),
            variant(GUARD, 60.0, 50.0, &[(1, 1e5)]),
            variant("quickmap-guard-direct", 25.0, 20.0, &[(1, 5e5)]),
            deferred,
            pool,
            variant(GLOBAL_LOCK, 45.0, 40.0, &[(1, 2.9e5), (2, 3.8e4), (4, 2e5)]),
            variant(
                "shootdown-map",
                900.0,
                880.0,
                &[(1, 1e4), (2, 3.8e4), (4, 7.6e4)],
            ),
        ]
        .into_iter()
        .chain(local)
        .collect()
    }

    #[test]
    fn all_met_at_the_limits() {
        let checks = check_targets(&good());
        assert_eq!(checks.len(), 18);
        for c in &checks {
            assert_eq!(c.status, TargetStatus::Met, "{c:?}");
        }
        assert_eq!(
            checks[0].requirement,
            "quickmap-guard (lean build): at most 40 instructions per pair beyond the touch \
             (direct-raw)"
        );
        assert_eq!(
            checks[0].measured,
            "40.0 (quickmap-guard 50.0 - direct-raw 10.0)"
        );
        assert_eq!(
            checks[1].measured,
            "10.0 (quickmap-guard 50.0 - global-lock-window 40.0)"
        );
        assert_eq!(checks[2].value, Some(10.0));
        assert_eq!(
            checks[3].measured, "80.0 (quickmap-window 90.0 - direct-raw 10.0)",
            "the checked build"
        );
        assert_eq!(checks[7].value, Some(10.0));
        assert_eq!(
            checks[8].requirement,
            "deferred-window: at most 1/32 invalidating operation (invalidations + full \
             flushes) per pair"
        );
        assert_eq!(
            checks[8].measured,
            "0.0312 (0.0000 invalidations + 0.0312 full flushes, worst over all boots)"
        );
        assert_eq!(checks[9].value, Some(0.0));
        assert_eq!(checks[10].measured, "3.00x (300.0k vs 100.0k pairs/s)");
        assert_eq!(checks[12].measured, "1.80x (540.0k vs 300.0k pairs/s)");
        assert_eq!(
            checks[13].requirement,
            "global-lock-window: at least 5x slower than deferred-window on 4 CPUs"
        );
        assert_eq!(checks[13].measured, "5.0x slower (200.0k vs 1.00M pairs/s)");
        assert_eq!(
            checks[14].requirement,
            "shootdown-map: at least 5x slower than quickmap-window on 2 CPUs"
        );
        assert_eq!(checks[14].measured, "5.0x slower (38.0k vs 190.0k pairs/s)");
        assert_eq!(
            checks[16].requirement,
            "local-guard (checked build): at most 120 instructions per pair beyond the touch \
             (direct-raw)"
        );
        assert_eq!(
            checks[16].measured,
            "120.0 (local-guard 130.0 - direct-raw 10.0)"
        );
        assert_eq!(
            checks[17].requirement,
            "context switch: at most 100 instructions more per local mapping held \
             (local-switch4 over local-switch0, checked build)"
        );
        assert_eq!(
            checks[17].measured,
            "100.0 (local-switch4 2100.0 - local-switch0 1700.0 per switch, over 4 held)"
        );
    }

    #[test]
    fn local_targets_miss_and_need_their_boots() {
        let mut figures = good();
        let switch = figures.len() - 1;
        figures[switch].checked.instructions_per_pair = 2100.5;
        assert_eq!(check_targets(&figures)[17].status, TargetStatus::Missed);
        figures.truncate(figures.len() - 3);
        let checks = check_targets(&figures);
        assert_eq!(
            checks[16].status,
            TargetStatus::NotMeasured("no figures for local-guard".into())
        );
        assert_eq!(
            checks[17].status,
            TargetStatus::NotMeasured("no figures for local-switch4".into())
        );
    }

    #[test]
    fn misses_and_gaps() {
        let mut figures = good();
        figures[3].lean.as_mut().unwrap().instructions_per_pair = 51.0;
        figures[1].checked.events_worst.ipis = 0.5;
        figures[5].throughput = vec![(1, 3e5), (4, 1e6)];
        figures[5].checked.events_worst.full_flushes = Some(0.04);
        figures[6].checked.events_worst.pte_writes = Some(0.001);
        figures[7].throughput[0].1 = 3e5;
        let checks = check_targets(&figures);
        assert_eq!(checks[0].status, TargetStatus::Missed);
        assert_eq!(checks[1].status, TargetStatus::Missed);
        assert_eq!(checks[5].status, TargetStatus::Missed);
        assert_eq!(checks[6].status, TargetStatus::Met);
        assert_eq!(checks[8].status, TargetStatus::Missed);
        assert_eq!(checks[9].status, TargetStatus::Missed);
        assert_eq!(
            checks[11].status,
            TargetStatus::Missed,
            "equal throughput is not above"
        );
        assert_eq!(
            checks[12].status,
            TargetStatus::NotMeasured("no 2-CPU throughput boot".into())
        );
        assert_eq!(checks[12].status.word(), "not measured");
        assert_eq!(checks[15].status, TargetStatus::Met);
        let none = check_targets(&[]);
        assert!(none
            .iter()
            .all(|c| matches!(c.status, TargetStatus::NotMeasured(_))));
    }

    #[test]
    fn no_lean_boot_leaves_the_lean_targets_unmeasured() {
        let mut figures = good();
        for variant in &mut figures {
            variant.lean = None;
        }
        let checks = check_targets(&figures);
        for check in &checks[..3] {
            assert_eq!(
                check.status,
                TargetStatus::NotMeasured(format!(
                    "no lean icount boot measured {}",
                    check.requirement.split(' ').next().unwrap()
                )),
                "{check:?}"
            );
        }
        assert!(checks[3..].iter().all(|c| c.status == TargetStatus::Met));
        // A checked boot without statistics cannot judge the event targets.
        figures[5].checked.events_worst.full_flushes = None;
        assert_eq!(
            check_targets(&figures)[8].status,
            TargetStatus::NotMeasured("no boot counted deferred-window's invalidations".into())
        );
    }

    #[test]
    fn si_units() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(4_560_000.0), "4.56M");
        assert_eq!(si(1.2e9), "1.20G");
    }
}
