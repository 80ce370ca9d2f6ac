//! What a workload boot amounted to: the kernel's `summary` counters turned into a
//! table, and the verdict (`docs/kernel-protocol.md`, "mode=run").

use std::fmt::Write as _;

use super::lines::{per_second, WorkloadLine};
use crate::protocol::parse_line;
use crate::verdict::BootVerdict;

/// The operation kinds, in the order the table shows them.
pub const OPERATION_KINDS: [&str; 7] = [
    "bounce_prewrite",
    "bounce_postread",
    "zero",
    "copy",
    "scrub",
    "interrupt_ops",
    "local",
];

/// Everything the verdict and the table need, gathered line by line.
#[derive(Debug, Default, Clone)]
pub struct WorkloadTally {
    /// `summary` counters, in arrival order (a repeated key: the last value wins).
    summary: Vec<(String, u64)>,
    /// `mismatch` lines seen.
    pub mismatch_lines: u64,
    /// `qmk: run ok` seen.
    run_ok: bool,
    /// The reason of `qmk: run FAILED: REASON`.
    run_failed: Option<String>,
    /// The first PANIC/EXCEPTION/error line: the best explanation of a crash.
    crash: Option<String>,
}

impl WorkloadTally {
    /// Takes note of one serial line (any line; irrelevant ones are ignored).
    pub fn observe(&mut self, line: &str) {
        match super::lines::parse_workload_line(line) {
            Some(WorkloadLine::Summary { key, value }) => {
                self.summary.retain(|(k, _)| *k != key);
                self.summary.push((key, value));
            }
            Some(WorkloadLine::Mismatch(_)) => self.mismatch_lines += 1,
            Some(WorkloadLine::RunOk) => self.run_ok = true,
            Some(WorkloadLine::RunFailed { reason }) => {
                self.run_failed.get_or_insert(reason);
            }
            Some(WorkloadLine::Progress(_)) => {}
            None => {
                if let Some(crash) = parse_line(line).and_then(|l| l.failure_report()) {
                    self.crash.get_or_insert(crash);
                }
            }
        }
    }

    /// A `summary` counter.
    pub fn counter(&self, key: &str) -> Option<u64> {
        self.summary.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Whether any `summary` line arrived.
    pub fn has_summary(&self) -> bool {
        !self.summary.is_empty()
    }

    /// `Ok` only if QEMU reported success, the kernel said `run ok`, and there were
    /// no mismatches (by its counter and by its lines); otherwise the reason, one line.
    pub fn verdict(&self, boot: BootVerdict) -> Result<(), String> {
        if let Some(reason) = &self.run_failed {
            return Err(format!("the kernel reported `run FAILED: {reason}`"));
        }
        let mismatches = self.counter("mismatches");
        if let Some(count) = mismatches.filter(|&n| n > 0) {
            return Err(format!("{count} mismatch(es): pages read back wrong"));
        }
        if self.mismatch_lines > 0 {
            return Err(format!(
                "{} mismatch line(s) although the summary says {}",
                self.mismatch_lines,
                mismatches.map_or("nothing".to_string(), |n| n.to_string())
            ));
        }
        if !boot.is_success() {
            return Err(match &self.crash {
                Some(crash) => format!("{boot}; the kernel said: {crash}"),
                None => boot.to_string(),
            });
        }
        if !self.run_ok {
            return Err("the boot succeeded but the kernel never printed `qmk: run ok`".into());
        }
        if mismatches.is_none() {
            return Err("the kernel printed no `qmk: summary mismatches=N` line".into());
        }
        Ok(())
    }

    /// The summary table (several lines, each ending in `\n`).
    pub fn render_table(&self) -> String {
        let mut table = String::new();
        let count = |key: &str| self.counter(key);
        let shown = |value: Option<u64>| value.map_or("-".to_string(), |n| n.to_string());
        let duration_ms = count("duration_ms");
        let _ = writeln!(
            table,
            "workload summary: {} CPU(s), {} thread(s)",
            shown(count("cpus")),
            shown(count("threads"))
        );
        let _ = writeln!(
            table,
            "  {:<22} {:>14} {:>8}",
            "operations", "count", "share"
        );
        let total_ops: u64 = OPERATION_KINDS.iter().filter_map(|k| count(k)).sum();
        for kind in OPERATION_KINDS {
            let _ = writeln!(
                table,
                "    {:<20} {:>14} {:>8}",
                kind,
                shown(count(kind)),
                percent(count(kind), total_ops)
            );
        }
        let _ = writeln!(table, "    {:<20} {:>14}", "total", total_ops);
        let bytes_verified = count("bytes_verified");
        let rows: [(&str, String); 4] = [
            ("pages verified", shown(count("pages_verified"))),
            ("bytes verified", with_megabytes(bytes_verified)),
            ("bytes moved", with_megabytes(count("bytes_moved"))),
            ("invalidations", shown(count("invalidations"))),
        ];
        for (name, value) in rows {
            let _ = writeln!(table, "  {name:<22} {value:>14}");
        }
        let direct = count("direct_map_hits");
        let window = count("window_maps");
        // Kernels with a deferred instance also count windows taken back while they
        // still mapped the page, and local full flushes; older ones print neither.
        let reuses = count("window_reuses");
        let mappings = direct.unwrap_or(0) + window.unwrap_or(0) + reuses.unwrap_or(0);
        let _ = writeln!(
            table,
            "  {:<22} {:>14} {:>8}",
            "direct-map hits",
            shown(direct),
            percent(direct, mappings)
        );
        let _ = writeln!(
            table,
            "  {:<22} {:>14} {:>8}",
            "window maps",
            shown(window),
            percent(window, mappings)
        );
        if reuses.is_some() {
            let _ = writeln!(
                table,
                "  {:<22} {:>14} {:>8}",
                "window reuses",
                shown(reuses),
                percent(reuses, mappings)
            );
        }
        if let Some(flushes) = count("full_flushes") {
            let _ = writeln!(table, "  {:<22} {:>14}", "full flushes", flushes);
        }
        // Kernels with local mappings count the slots they took, the switches away from
        // a thread that held some, and the sleeps taken while holding them.
        for (key, name) in [
            ("local_slot_maps", "local slot maps"),
            ("local_switch_outs", "switches of holders"),
            ("local_sleeps", "sleeps while mapped"),
        ] {
            if let Some(value) = count(key) {
                let _ = writeln!(table, "  {name:<22} {value:>14}");
            }
        }
        let _ = writeln!(
            table,
            "  {:<22} {:>14}",
            "mismatches",
            shown(count("mismatches"))
        );
        let _ = writeln!(
            table,
            "  {:<22} {:>14}",
            "duration",
            duration_ms.map_or("-".to_string(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
        );
        // Bytes moved is the work done; fall back on bytes verified if absent.
        let bytes = count("bytes_moved").or(bytes_verified);
        let throughput = match duration_ms {
            Some(ms) => format!(
                "{:.0} ops/s, {} MB/s",
                per_second(total_ops, ms).unwrap_or(0.0),
                bytes
                    .and_then(|b| per_second(b, ms))
                    .map_or("-".to_string(), |b| format!("{:.1}", b / 1e6))
            ),
            None => "-".to_string(),
        };
        let _ = writeln!(table, "  {:<22} {:>14}", "throughput", throughput);
        table
    }
}

/// `part` as a percentage of `whole`, e.g. ` 42.0%`; `-` when unknown.
fn percent(part: Option<u64>, whole: u64) -> String {
    match part {
        Some(part) if whole > 0 => format!("{:.1}%", part as f64 * 100.0 / whole as f64),
        _ => "-".to_string(),
    }
}

fn with_megabytes(bytes: Option<u64>) -> String {
    match bytes {
        Some(bytes) => format!("{bytes} ({:.1} MB)", bytes as f64 / 1e6),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_RUN: &str = "\
qmk: progress done=10 total=10 bytes=40960 elapsed_ms=500 cpu0=10
qmk: summary bounce_prewrite=10
qmk: summary bounce_postread=10
qmk: summary zero=20
qmk: summary copy=40
qmk: summary scrub=15
qmk: summary interrupt_ops=5
qmk: summary local=0
qmk: summary pages_verified=100
qmk: summary bytes_verified=409600
qmk: summary bytes_moved=819200
qmk: summary direct_map_hits=25
qmk: summary window_maps=75
qmk: summary invalidations=75
qmk: summary mismatches=0
qmk: summary duration_ms=2000
qmk: summary cpus=4
qmk: summary threads=8
qmk: run ok";

    fn tally(text: &str) -> WorkloadTally {
        let mut tally = WorkloadTally::default();
        text.lines().for_each(|line| tally.observe(line));
        tally
    }

    #[test]
    fn good_run_passes_and_tabulates() {
        let tally = tally(GOOD_RUN);
        assert_eq!(tally.verdict(BootVerdict::Success), Ok(()));
        assert_eq!(
            tally.render_table(),
            "\
workload summary: 4 CPU(s), 8 thread(s)
  operations                      count    share
    bounce_prewrite                  10    10.0%
    bounce_postread                  10    10.0%
    zero                             20    20.0%
    copy                             40    40.0%
    scrub                            15    15.0%
    interrupt_ops                     5     5.0%
    local                             0     0.0%
    total                           100
  pages verified                    100
  bytes verified         409600 (0.4 MB)
  bytes moved            819200 (0.8 MB)
  invalidations                      75
  direct-map hits                    25    25.0%
  window maps                        75    75.0%
  mismatches                          0
  duration                       2.00 s
  throughput             50 ops/s, 0.4 MB/s
"
        );
    }

    #[test]
    fn deferred_counters_get_rows_of_their_own() {
        let deferred = GOOD_RUN.replace(
            "qmk: summary invalidations=75",
            "qmk: summary window_reuses=100\nqmk: summary invalidations=0\nqmk: summary full_flushes=7",
        );
        let table = tally(&deferred).render_table();
        assert!(
            table.contains("  direct-map hits                    25    12.5%\n"),
            "{table}"
        );
        assert!(
            table.contains("  window maps                        75    37.5%\n"),
            "{table}"
        );
        assert!(
            table.contains("  window reuses                     100    50.0%\n"),
            "{table}"
        );
        assert!(
            table.contains("  full flushes                        7\n"),
            "{table}"
        );
        assert!(!tally(GOOD_RUN).render_table().contains("full flushes"));
    }

    #[test]
    fn local_mapping_counters_get_rows_of_their_own() {
        let local = GOOD_RUN.replace(
            "qmk: summary mismatches=0",
            "qmk: summary local_slot_maps=40\nqmk: summary local_switch_outs=12\n\
             qmk: summary local_sleeps=3\nqmk: summary mismatches=0",
        );
        let table = tally(&local).render_table();
        for row in [
            "  local slot maps                    40\n",
            "  switches of holders                12\n",
            "  sleeps while mapped                 3\n",
        ] {
            assert!(table.contains(row), "{row:?} in {table}");
        }
        assert!(!tally(GOOD_RUN).render_table().contains("local slot maps"));
    }

    #[test]
    fn every_failure_has_a_reason() {
        let good = tally(GOOD_RUN);
        assert!(good
            .verdict(BootVerdict::KernelFailure)
            .unwrap_err()
            .contains("the kernel reported failure"));
        let mismatch = tally(&GOOD_RUN.replace("mismatches=0", "mismatches=2"));
        assert_eq!(
            mismatch.verdict(BootVerdict::Success),
            Err("2 mismatch(es): pages read back wrong".into())
        );
        let stray = tally(&format!("{GOOD_RUN}\nqmk: mismatch kind=zero page=0x1"));
        assert_eq!(
            stray.verdict(BootVerdict::Success),
            Err("1 mismatch line(s) although the summary says 0".into())
        );
        let no_ok = tally(&GOOD_RUN.replace("qmk: run ok", ""));
        assert!(no_ok
            .verdict(BootVerdict::Success)
            .unwrap_err()
            .contains("never printed `qmk: run ok`"));
        let failed = tally(&GOOD_RUN.replace("run ok", "run FAILED: stuck cpu 3"));
        assert_eq!(
            failed.verdict(BootVerdict::KernelFailure),
            Err("the kernel reported `run FAILED: stuck cpu 3`".into())
        );
        let no_counter = tally(&GOOD_RUN.replace("qmk: summary mismatches=0", ""));
        assert!(no_counter
            .verdict(BootVerdict::Success)
            .unwrap_err()
            .contains("summary mismatches=N"));
        let crash = tally("qmk: PANIC: PTE busy at a.rs:1\nqmk: error: later");
        assert!(crash
            .verdict(BootVerdict::KernelFailure)
            .unwrap_err()
            .ends_with("the kernel said: PANIC: PTE busy at a.rs:1"));
        let unknown = tally("qmk: error: unknown boot option 'ops'");
        assert!(unknown
            .verdict(BootVerdict::KernelFailure)
            .unwrap_err()
            .contains("unknown boot option 'ops'"));
    }

    #[test]
    fn empty_table_shows_dashes() {
        let table = WorkloadTally::default().render_table();
        assert!(
            table.contains("  mismatches                          -\n"),
            "{table}"
        );
        assert!(table.contains("    zero                              -        -\n"));
        assert!(!WorkloadTally::default().has_summary());
    }
}
