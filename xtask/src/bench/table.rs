//! The benchmark's text report: cost per pair, throughput and ratios, targets.

use std::fmt::Write as _;

use super::figures::{lookup, VariantFigures};
use super::targets::{si, TargetCheck, TargetStatus};

/// The whole report (several lines, each ending in `\n`). `cpu_counts` are the
/// throughput boots' CPU counts, in column order; `overhead` the empty loop's ticks.
pub fn render_report(
    figures: &[VariantFigures],
    cpu_counts: &[u32],
    overhead: u64,
    targets: &[TargetCheck],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cost per enter+access+remove pair (1 CPU under icount: one TSC tick = one \
         instruction; empty-loop overhead of {overhead} subtracted; events: worst over \
         all boots)"
    );
    let _ = writeln!(
        out,
        "  {:<20} {:>11} {:>11} {:>10} {:>11} {:>11}",
        "variant", "instr/pair", "inval/pair", "IPIs/pair", "locks/pair", "PTEw/pair"
    );
    for f in figures {
        let e = &f.events_worst;
        let _ = writeln!(
            out,
            "  {:<20} {:>11.1} {:>11.3} {:>10.3} {:>11.3} {:>11.3}",
            f.name, f.instructions_per_pair, e.invalidations, e.ipis, e.locks, e.pte_writes
        );
    }

    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "throughput in pairs/s of guest time (TCG: compare within this run only), scaling \
         vs 1 CPU, and ratio to quickmap-window at the same CPU count"
    );
    let mut header = format!("  {:<20}", "variant");
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
        let mut row = format!("  {:<20}", f.name);
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

fn shown(value: Option<f64>, format: fn(f64) -> String) -> String {
    value.map_or("-".to_string(), format)
}

fn ratio(value: f64) -> String {
    format!("{value:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figures::EventsPerPair;

    #[test]
    fn report_layout() {
        let figures = vec![VariantFigures {
            name: "quickmap-window".into(),
            instructions_per_pair: 52.0,
            events_icount: EventsPerPair::default(),
            events_worst: EventsPerPair {
                invalidations: 1.0,
                ipis: 0.0,
                locks: 0.0,
                pte_writes: 2.0,
            },
            throughput: vec![(1, 100_000.0), (2, 195_000.0)],
            scaling: vec![(1, 1.0), (2, 1.95)],
            vs_window: vec![(1, 1.0), (2, 1.0)],
        }];
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
        let report = render_report(&figures, &[1, 2], 6, &targets);
        let expected = "\
  variant               instr/pair  inval/pair  IPIs/pair  locks/pair   PTEw/pair
  quickmap-window             52.0       1.000      0.000       0.000       2.000
";
        assert!(report.contains(expected), "{report}");
        assert!(report.contains("overhead of 6 subtracted"), "{report}");
        let expected = "\
  variant                  1 CPU    2 CPUs    x2/1   /win@1   /win@2
  quickmap-window         100.0k    195.0k    1.95     1.00     1.00
";
        assert!(report.contains(expected), "{report}");
        assert!(report.contains(
            "targets: 1 of 2 met\n  met     quickmap-window: no IPIs: measured 0.000 (worst \
             over all boots)\n  n/a     x on 4 CPUs: not measured: no 4-CPU throughput boot\n"
        ));
    }
}
