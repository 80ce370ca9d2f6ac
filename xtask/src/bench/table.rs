//! The benchmark's text report: cost per pair in each kernel build, throughput and
//! ratios, targets.

use std::fmt::Write as _;

use super::figures::{lookup, Cost, VariantFigures};
use super::targets::{si, TargetCheck, TargetStatus};

/// The empty loop's ticks per pair in each build's icount boot (`None`: no lean boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overheads {
    /// The checked build's.
    pub checked: u64,
    /// The lean build's.
    pub lean: Option<u64>,
}

/// The whole report (several lines, each ending in `\n`). `cpu_counts` are the
/// throughput boots' CPU counts, in column order.
pub fn render_report(
    figures: &[VariantFigures],
    cpu_counts: &[u32],
    overheads: Overheads,
    targets: &[TargetCheck],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cost per enter+access+remove pair, checked build (contract checks, statistics): 1 CPU \
         under icount, one TSC tick = one instruction; empty-loop overhead of {} subtracted; \
         events per pair: worst over all boots",
        overheads.checked
    );
    cost_table(&mut out, figures, |f| Some(&f.checked), false);
    if let Some(overhead) = overheads.lean {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "cost per pair, lean build (neither; quickmap's events not counted: -): 1 CPU under \
             icount; empty-loop overhead of {overhead} subtracted; vs checked: instructions \
             saved"
        );
        cost_table(&mut out, figures, |f| f.lean.as_ref(), true);
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "throughput in pairs/s of guest time, checked build (TCG: compare within this run \
         only), scaling vs 1 CPU, and ratio to quickmap-window at the same CPU count"
    );
    let mut header = format!("  {:<22}", "variant");
    for cpus in cpu_counts {
        let unit = if *cpus == 1 { "CPU" } else { "CPUs" };
        let _ = write!(header, " {:>9}", format!("{cpus} {unit}"));
    }
    for cpus in cpu_counts.iter().filter(|&&c| c != 1) {
        let _ = write!(header, " {:>7}", format!("x{cpus}/1"));
    }
    for cpus in cpu_counts {
        let _ = write!(header, " {:>8}", format!("/win@{cpus}"));
    }
    let _ = writeln!(out, "{header}");
    for f in figures {
        let mut row = format!("  {:<22}", f.name);
        for &cpus in cpu_counts {
            let _ = write!(row, " {:>9}", shown(lookup(&f.throughput, cpus), si));
        }
        for &cpus in cpu_counts.iter().filter(|&&c| c != 1) {
            let _ = write!(row, " {:>7}", shown(lookup(&f.scaling, cpus), ratio));
        }
        for &cpus in cpu_counts {
            let _ = write!(row, " {:>8}", shown(lookup(&f.vs_window, cpus), ratio));
        }
        let _ = writeln!(out, "{row}");
    }

    let _ = writeln!(out);
    let met = targets
        .iter()
        .filter(|t| t.status == TargetStatus::Met)
        .count();
    let _ = writeln!(out, "targets: {met} of {} met", targets.len());
    for target in targets {
        let word = match target.status {
            TargetStatus::Met => "met",
            TargetStatus::Missed => "MISSED",
            TargetStatus::NotMeasured(_) => "n/a",
        };
        let detail = match &target.status {
            TargetStatus::NotMeasured(reason) => format!("not measured: {reason}"),
            _ => format!("measured {}", target.measured),
        };
        let _ = writeln!(out, "  {word:<7} {}: {detail}", target.requirement);
    }
    out
}

/// One build's cost table: a row per variant the build measured; with `vs_checked`,
/// a column of instructions saved against the checked build.
fn cost_table(
    out: &mut String,
    figures: &[VariantFigures],
    cost: fn(&VariantFigures) -> Option<&Cost>,
    vs_checked: bool,
) {
    let mut header = format!("  {:<22} {:>10}", "variant", "instr/pair");
    if vs_checked {
        let _ = write!(header, " {:>10}", "vs checked");
    }
    let _ = writeln!(
        out,
        "{header} {:>10} {:>10} {:>9} {:>10} {:>9} {:>10}",
        "inval/pair", "flush/pair", "PTEw/pair", "reuse/pair", "IPIs/pair", "locks/pair"
    );
    for f in figures {
        let Some(c) = cost(f) else { continue };
        let e = &c.events_worst;
        let mut row = format!("  {:<22} {:>10.1}", f.name, c.instructions_per_pair);
        if vs_checked {
            let saved = f.checked.instructions_per_pair - c.instructions_per_pair;
            let _ = write!(row, " {saved:>10.1}");
        }
        let _ = writeln!(
            out,
            "{row} {:>10} {:>10} {:>9} {:>10} {:>9.3} {:>10.3}",
            shown(e.invalidations, per_pair),
            shown(e.full_flushes, per_pair),
            shown(e.pte_writes, per_pair),
            shown(e.reuses, per_pair),
            e.ipis,
            e.locks
        );
    }
}

fn shown(value: Option<f64>, format: fn(f64) -> String) -> String {
    value.map_or("-".to_string(), format)
}

fn ratio(value: f64) -> String {
    format!("{value:.2}")
}

fn per_pair(value: f64) -> String {
    format!("{value:.4}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figures::EventsPerPair;

    fn cost(instructions: f64, counted: bool) -> Cost {
        let count = |value: f64| counted.then_some(value);
        let events = EventsPerPair {
            invalidations: count(0.0),
            full_flushes: count(0.03125),
            pte_writes: count(1.0),
            reuses: count(0.0),
            ..EventsPerPair::default()
        };
        Cost::same_events(instructions, events)
    }

    #[test]
    fn report_layout() {
        let figures = vec![
            VariantFigures {
                name: "deferred-window".into(),
                checked: cost(152.0, true),
                lean: Some(cost(140.5, false)),
                throughput: vec![(1, 100_000.0), (2, 195_000.0)],
                scaling: vec![(1, 1.0), (2, 1.95)],
                vs_window: vec![(1, 1.0), (2, 1.0)],
            },
            VariantFigures {
                name: "shootdown-map".into(),
                checked: cost(300.0, true),
                lean: None,
                throughput: vec![(1, 1000.0)],
                scaling: vec![(1, 1.0)],
                vs_window: vec![(1, 0.01)],
            },
        ];
        let targets = vec![
            TargetCheck {
                requirement: "quickmap-window: no IPIs".into(),
                measured: "0.000 (worst over all boots)".into(),
                value: Some(0.0),
                limit: 0.0,
                status: TargetStatus::Met,
            },
            TargetCheck {
                requirement: "x on 4 CPUs".into(),
                measured: "-".into(),
                value: None,
                limit: 5.0,
                status: TargetStatus::NotMeasured("no 4-CPU throughput boot".into()),
            },
        ];
        let overheads = Overheads {
            checked: 6,
            lean: Some(5),
        };
        let report = render_report(&figures, &[1, 2], overheads, &targets);
        let expected = "\
  variant                instr/pair inval/pair flush/pair PTEw/pair reuse/pair IPIs/pair locks/pair
  deferred-window             152.0     0.0000     0.0312    1.0000     0.0000     0.000      0.000
  shootdown-map               300.0     0.0000     0.0312    1.0000     0.0000     0.000      0.000
";
        assert!(report.contains(expected), "{report}");
        assert!(report.contains("overhead of 6 subtracted"), "{report}");
        let expected = "\
  variant                instr/pair vs checked inval/pair flush/pair PTEw/pair reuse/pair IPIs/pair locks/pair
  deferred-window             140.5       11.5          -          -         -          -     0.000      0.000

throughput";
        assert!(report.contains(expected), "{report}");
        assert!(report.contains("overhead of 5 subtracted"), "{report}");
        let expected = "\
  variant                    1 CPU    2 CPUs    x2/1   /win@1   /win@2
  deferred-window           100.0k    195.0k    1.95     1.00     1.00
  shootdown-map               1.0k         -       -     0.01        -
";
        assert!(report.contains(expected), "{report}");
        assert!(report.contains(
            "targets: 1 of 2 met\n  met     quickmap-window: no IPIs: measured 0.000 (worst \
             over all boots)\n  n/a     x on 4 CPUs: not measured: no 4-CPU throughput boot\n"
        ));
        let without_lean = render_report(
            &figures,
            &[1, 2],
            Overheads {
                checked: 6,
                lean: None,
            },
            &targets,
        );
        assert!(!without_lean.contains("lean build"), "{without_lean}");
    }
}
