//! The benchmark's targets (DESIGN.md §3.4, §6): each is met, missed, or could not be
//! judged because a boot it needs was not run (e.g. `--cpus 1,4` has no 2-CPU boot).
//! Missing a target does not fail the bench: it is a measurement, and the report says
//! which targets were missed and by how much.

use super::figures::{VariantFigures, WINDOW};

/// quickmap-window's instructions per pair beyond direct-raw's (the touch itself).
pub const MAX_WINDOW_INSTRUCTIONS: f64 = 60.0;
/// quickmap-window's invalidations per pair.
pub const MAX_WINDOW_INVALIDATIONS: f64 = 1.0;
/// quickmap-direct's instructions per pair beyond direct-raw's.
pub const MAX_DIRECT_EXTRA_INSTRUCTIONS: f64 = 10.0;
/// quickmap-window's throughput on 2 CPUs over 1 CPU: near-linear scaling.
pub const MIN_WINDOW_SCALING_2: f64 = 1.8;
/// How many times slower than quickmap-window the serialising designs must be.
pub const MIN_SLOWDOWN: f64 = 5.0;
/// The serialising designs compared with quickmap-window.
pub const SERIALISING: [&str; 2] = ["global-lock-window", "shootdown-map"];
/// The CPU counts at which they are compared.
pub const SLOWDOWN_CPUS: [u32; 2] = [2, 4];

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
    /// What is required, e.g. `quickmap-window: at most 60 instructions per pair ...`.
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

fn find<'a>(figures: &'a [VariantFigures], name: &str) -> Option<&'a VariantFigures> {
    figures.iter().find(|f| f.name == name)
}

/// A check of `value <= limit` (or `>=` when `at_least`).
fn check(
    requirement: String,
    value: Result<(f64, String), String>,
    limit: f64,
    at_least: bool,
) -> TargetCheck {
    match value {
        Ok((value, measured)) => TargetCheck {
            requirement,
            measured,
            value: Some(value),
            limit,
            status: if (at_least && value >= limit) || (!at_least && value <= limit) {
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

/// Checks every target against `figures` (from [`super::figures::compute_figures`]).
pub fn check_targets(figures: &[VariantFigures]) -> Vec<TargetCheck> {
    let window = find(figures, WINDOW);
    let raw = find(figures, "direct-raw");
    let direct = find(figures, "quickmap-direct");
    let missing = |name: &str| format!("no figures for {name}");
    let mut checks = Vec::new();

    let extra_instructions = |variant: Option<&VariantFigures>, name: &str| {
        let variant = variant.ok_or_else(|| missing(name))?;
        let raw = raw.ok_or_else(|| missing("direct-raw"))?;
        let extra = variant.instructions_per_pair - raw.instructions_per_pair;
        Ok((
            extra,
            format!(
                "{extra:.1} ({name} {:.1} - direct-raw {:.1})",
                variant.instructions_per_pair, raw.instructions_per_pair
            ),
        ))
    };
    checks.push(check(
        format!(
            "{WINDOW}: at most {MAX_WINDOW_INSTRUCTIONS} instructions per pair beyond the \
             touch (direct-raw)"
        ),
        extra_instructions(window, WINDOW),
        MAX_WINDOW_INSTRUCTIONS,
        false,
    ));
    let worst = |pick: fn(&VariantFigures) -> f64| {
        let window = window.ok_or_else(|| missing(WINDOW))?;
        let value = pick(window);
        Ok((value, format!("{value:.3} (worst over all boots)")))
    };
    checks.push(check(
        format!("{WINDOW}: at most {MAX_WINDOW_INVALIDATIONS} invalidation per pair"),
        worst(|f| f.events_worst.invalidations),
        MAX_WINDOW_INVALIDATIONS,
        false,
    ));
    checks.push(check(
        format!("{WINDOW}: no IPIs"),
        worst(|f| f.events_worst.ipis),
        0.0,
        false,
    ));
    checks.push(check(
        format!("{WINDOW}: no locks"),
        worst(|f| f.events_worst.locks),
        0.0,
        false,
    ));
    checks.push(check(
        format!(
            "quickmap-direct: at most {MAX_DIRECT_EXTRA_INSTRUCTIONS} instructions per pair \
             more than direct-raw"
        ),
        extra_instructions(direct, "quickmap-direct"),
        MAX_DIRECT_EXTRA_INSTRUCTIONS,
        false,
    ));
    let scaling = (|| {
        let window = window.ok_or_else(|| missing(WINDOW))?;
        let one = window.throughput_at(1).ok_or("no 1-CPU throughput boot")?;
        let two = window.throughput_at(2).ok_or("no 2-CPU throughput boot")?;
        let ratio = two / one;
        Ok((
            ratio,
            format!("{ratio:.2}x ({} vs {} pairs/s)", si(two), si(one)),
        ))
    })();
    checks.push(check(
        format!("{WINDOW}: throughput on 2 CPUs at least {MIN_WINDOW_SCALING_2}x 1 CPU"),
        scaling,
        MIN_WINDOW_SCALING_2,
        true,
    ));
    for name in SERIALISING {
        for cpus in SLOWDOWN_CPUS {
            let slowdown = (|| {
                let window = window.ok_or_else(|| missing(WINDOW))?;
                let other = find(figures, name).ok_or_else(|| missing(name))?;
                let fast = window
                    .throughput_at(cpus)
                    .ok_or(format!("no {cpus}-CPU throughput boot"))?;
                let slow = other
                    .throughput_at(cpus)
                    .ok_or(format!("no {cpus}-CPU throughput boot"))?;
                let factor = fast / slow;
                Ok((
                    factor,
                    format!("{factor:.1}x slower ({} vs {} pairs/s)", si(slow), si(fast)),
                ))
            })();
            checks.push(check(
                format!("{name}: at least {MIN_SLOWDOWN}x slower than {WINDOW} on {cpus} CPUs"),
                slowdown,
                MIN_SLOWDOWN,
                true,
            ));
        }
    }
    checks
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

    fn variant(name: &str, instructions: f64, throughput: &[(u32, f64)]) -> VariantFigures {
        VariantFigures {
            name: name.into(),
            instructions_per_pair: instructions,
            events_icount: EventsPerPair::default(),
            events_worst: EventsPerPair {
                invalidations: 1.0,
                ..EventsPerPair::default()
            },
            throughput: throughput.to_vec(),
            scaling: Vec::new(),
            vs_window: Vec::new(),
        }
    }

    fn good() -> Vec<VariantFigures> {
        vec![
            variant("direct-raw", 10.0, &[(1, 1e6), (2, 2e6), (4, 4e6)]),
            variant(WINDOW, 60.0, &[(1, 1e5), (2, 1.9e5), (4, 3.8e5)]),
            variant("quickmap-direct", 20.0, &[(1, 5e5)]),
            variant(
                "global-lock-window",
                80.0,
                &[(1, 9e4), (2, 3.8e4), (4, 1e4)],
            ),
            variant("shootdown-map", 900.0, &[(1, 1e4), (2, 1e3), (4, 5e2)]),
        ]
    }

    #[test]
    fn all_met_at_the_limits() {
        let checks = check_targets(&good());
        assert_eq!(checks.len(), 10);
        for c in &checks {
            assert_eq!(c.status, TargetStatus::Met, "{c:?}");
        }
        assert_eq!(
            checks[0].measured,
            "50.0 (quickmap-window 60.0 - direct-raw 10.0)"
        );
        assert_eq!(checks[4].value, Some(10.0));
        assert_eq!(checks[5].measured, "1.90x (190.0k vs 100.0k pairs/s)");
        assert_eq!(
            checks[6].requirement,
            "global-lock-window: at least 5x slower than quickmap-window on 2 CPUs"
        );
        assert_eq!(checks[6].measured, "5.0x slower (38.0k vs 190.0k pairs/s)");
    }

    #[test]
    fn misses_and_gaps() {
        let mut figures = good();
        figures[1].instructions_per_pair = 71.0;
        figures[1].events_worst.ipis = 0.5;
        figures[1].throughput = vec![(1, 1e5), (4, 3e5)];
        let checks = check_targets(&figures);
        assert_eq!(checks[0].status, TargetStatus::Missed);
        assert_eq!(checks[2].status, TargetStatus::Missed);
        assert_eq!(checks[3].status, TargetStatus::Met);
        assert_eq!(
            checks[5].status,
            TargetStatus::NotMeasured("no 2-CPU throughput boot".into())
        );
        assert_eq!(checks[5].status.word(), "not measured");
        assert_eq!(checks[9].status, TargetStatus::Met);
        let none = check_targets(&[]);
        assert!(none
            .iter()
            .all(|c| matches!(c.status, TargetStatus::NotMeasured(_))));
    }

    #[test]
    fn si_units() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(4_560_000.0), "4.56M");
        assert_eq!(si(1.2e9), "1.20G");
    }
}
