//! `cargo xtask test`: every test there is.
//!
//! 1. Host checks ([`crate::host_checks`]): `cargo test` and `cargo clippy` with and
//!    without quickmap's default `contract-checks` and with all features, the bare
//!    library's build with warnings denied (host, `x86_64-unknown-none`,
//!    `aarch64-unknown-none`), `cargo doc` with warnings denied, the packaged crate
//!    unpacked and tested on its own, the client crate outside the workspace
//!    (`examples/bounce-client`) tested and linted, `cargo fmt --check`.
//! 2. The kernel part, once per architecture of `--arch` (default both, x86_64
//!    first; every summary line names its architecture):
//!    - `static-check`: in the built ELF, the strict pair `pmap_quick_enter_page` /
//!      `pmap_quick_remove_page` and the deferred pair `qmk_deferred_enter_page` /
//!      `qmk_deferred_remove_page` take no lock, and invalidate exactly where their
//!      design says: one `invlpg` in the strict remove, none on the deferred hot paths,
//!      one in the deferred remove's uncached slow path, a CR3 write in its flush slow
//!      path ([`crate::static_check`]); on aarch64 the same with `tlbi vale1` (never
//!      a broadcast `tlbi ...is`), `tlbi vmalle1` and no exclusive or LSE atomics. It lives here rather than with the host checks
//!      because it needs the kernel built, and `--host-only` stays free of the kernel;
//!    - the kernel suite, once per CPU count in `--cpus` (default 1, 2, 4 and 8; 1
//!      with `--icount`): a `mode=list` boot to learn the tests, one `mode=test` boot
//!      for all ordinary tests, one boot per `should_panic` test (its panic ends the
//!      boot);
//!    - `run-workload` and `run-workload-deferred`: short `mode=run` boots
//!      ([`WORKLOAD_TEST_OPS`] operations on [`WORKLOAD_TEST_CPUS`] CPUs), one on each
//!      quickmap instance of the kernel, judged like `cargo xtask run`
//!      (`--no-workload` skips them).
//!
//!    With `--test FILTER` only the selected kernel tests run: the static check and
//!    the workload are skipped, with a note.
//!
//! Result lines go to stdout as each kernel test finishes; diagnostics go to stderr.
//! The last line sums the kernel tests: `N passed, N failed`. A failure that is not a
//! test's (the kernel did not build, a boot crashed after its last result) is counted
//! as a failed `<...>` entry, so the sum never hides it.

use std::path::Path;

use super::run::{boot_workload, workload_spec};
use super::{boot_kernel, Failure};
use crate::arch::Arch;
use crate::boot_config::{BootMode, BootSpec};
use crate::cli::{MachineOptions, TestOptions, WorkloadStop};
use crate::host_checks::run_host_checks;
use crate::kernel_build::build_kernel;
use crate::protocol::{parse_line, KernelLine, ListedTest, TestOutcome};
use crate::qemu_setup::locate_or_install_qemu;
use crate::static_check::run_static_check;
use crate::suite::{judge_boot, plan_boots, tally, PlannedBoot, TestRecord};

/// Operations of the workload boot in `cargo xtask test`: enough to exercise every
/// kind of operation on every CPU, few enough to finish in seconds under TCG. (The
/// help of `--no-workload` in `cli` quotes this figure and [`WORKLOAD_TEST_CPUS`].)
pub const WORKLOAD_TEST_OPS: u64 = 10_000;
/// CPUs of that boot (1 with `--icount`, which QEMU runs on one CPU only).
pub const WORKLOAD_TEST_CPUS: u32 = 4;

/// The kernel results of one CPU count (or of the static check, or the workload).
struct SuiteResult {
    /// e.g. `kernel suite, x86_64, 4 CPUs`.
    title: String,
    /// The architecture the results are of.
    arch: Arch,
    records: Vec<TestRecord>,
}

/// Runs the requested halves, prints the summary, fails if anything failed.
pub fn test(options: &TestOptions) -> Result<(), Failure> {
    let host_failures = if options.scope.runs_host() {
        run_host_checks()
    } else {
        Vec::new()
    };
    let suites: Vec<SuiteResult> = if options.scope.runs_kernel() {
        options
            .arches
            .iter()
            .flat_map(|&arch| run_kernel_suites(&for_arch(options, arch)))
            .collect()
    } else {
        Vec::new()
    };

    println!();
    if options.scope.runs_host() {
        if host_failures.is_empty() {
            println!("host checks: ok");
        } else {
            println!("host checks: FAILED: {}", host_failures.join("; "));
        }
    }
    let all_records = || suites.iter().flat_map(|s| s.records.iter());
    if options.scope.runs_kernel() {
        let several_arches = options.arches.len() > 1;
        let failed: Vec<(Arch, &TestRecord)> = suites
            .iter()
            .flat_map(|suite| suite.records.iter().map(|record| (suite.arch, record)))
            .filter(|(_, record)| !record.passed())
            .collect();
        if !failed.is_empty() {
            println!("kernel failures:");
            for (arch, record) in failed {
                if several_arches {
                    println!("    {} ({})", record.name, arch.word());
                } else {
                    println!("    {}", record.name);
                }
            }
        }
        if suites.len() > 1 {
            for suite in &suites {
                let (passed, failed) = tally(&suite.records);
                println!("{}: {passed} passed, {failed} failed", suite.title);
            }
        }
        let (passed, failed) = tally(all_records());
        println!("{passed} passed, {failed} failed");
    }
    if host_failures.is_empty() && all_records().all(TestRecord::passed) {
        Ok(())
    } else {
        Err(Failure::Reported)
    }
}

/// `options` with `arch` as the machine's architecture.
fn for_arch(options: &TestOptions, arch: Arch) -> TestOptions {
    TestOptions {
        machine: MachineOptions {
            arch,
            ..options.machine.clone()
        },
        ..options.clone()
    }
}

/// The kernel part on `options.machine.arch`.
fn run_kernel_suites(options: &TestOptions) -> Vec<SuiteResult> {
    let arch = options.machine.arch;
    println!();
    println!("kernel part on {}", arch.word());
    let setup = build_kernel(arch, options.machine.verbose)
        .and_then(|kernel| locate_or_install_qemu(arch).map(|qemu| (kernel, qemu)));
    let (kernel, qemu) = match setup {
        Ok(found) => found,
        Err(reason) => {
            eprintln!("xtask: {reason}");
            return vec![SuiteResult {
                title: format!("kernel suite, {}", arch.word()),
                arch,
                records: vec![failed_record("<kernel setup>", reason)],
            }];
        }
    };
    let mut results = Vec::new();
    if options.filter.is_some() {
        eprintln!("xtask: note: --test given: static-check and run-workload are skipped");
    } else {
        results.push(static_check(&kernel, arch));
    }
    results.extend(
        options
            .cpu_counts
            .iter()
            .map(|&cpus| run_suite(&qemu, &kernel, cpus, options)),
    );
    if options.workload && options.filter.is_none() {
        results.push(run_workload(&qemu, &kernel, options));
    }
    results
}

/// The static check as one result, `static-check`.
fn static_check(kernel: &Path, arch: Arch) -> SuiteResult {
    println!();
    println!("static check of {}", crate::paths::shown(kernel));
    let title = format!("static check, {}", arch.word());
    let outcome = match run_static_check(kernel, arch) {
        Ok(outcome) => outcome,
        Err(reason) => {
            eprintln!("xtask: {reason}");
            return SuiteResult {
                title,
                arch,
                records: vec![failed_record("static-check", reason)],
            };
        }
    };
    for line in &outcome.report {
        println!("  {line}");
    }
    let record = if outcome.problems.is_empty() {
        println!("test static-check ... ok");
        TestRecord {
            name: "static-check".into(),
            failure: None,
            shown_live: true,
        }
    } else {
        for problem in &outcome.problems {
            println!("  problem: {problem}");
        }
        failed_record("static-check", outcome.problems.join("; "))
    };
    SuiteResult {
        title,
        arch,
        records: vec![record],
    }
}

/// The short workload boots, one per invalidation mode of the kernel's quickmap, as
/// one result each: `run-workload` (strict) and `run-workload-deferred`. Each must end
/// `run ok` with no mismatch; the deferred one's full flushes and window reuses go into
/// its result line and the suite's title (so into the final summary too).
fn run_workload(qemu: &Path, kernel: &Path, options: &TestOptions) -> SuiteResult {
    use crate::cli::Invalidation;
    let machine = &options.machine;
    let cpus = if machine.icount {
        1
    } else {
        WORKLOAD_TEST_CPUS
    };
    let arch = machine.arch;
    let mut title = format!("workload, {}", arch.word());
    let mut records = Vec::new();
    for invalidation in Invalidation::ALL {
        let name = match invalidation {
            Invalidation::Strict => "run-workload",
            Invalidation::Deferred => "run-workload-deferred",
        };
        let spec = workload_spec(
            cpus,
            machine,
            Some(WorkloadStop::Ops(WORKLOAD_TEST_OPS)),
            invalidation,
        );
        println!();
        println!(
            "running the page workload: {WORKLOAD_TEST_OPS} operations on {cpus} CPU{}, {} \
             invalidation ({})",
            if cpus == 1 { "" } else { "s" },
            invalidation.word(),
            spec.kernel_cmdline()
        );
        let label = super::run::workload_label("workload", cpus, invalidation);
        let record = match boot_workload(qemu, kernel, &spec, &label, machine.verbose) {
            Err(reason) => failed_record(name, reason),
            Ok((tally, report)) => match tally.verdict(report.verdict) {
                Ok(()) => {
                    if invalidation == Invalidation::Deferred {
                        let count = |key| {
                            tally
                                .counter(key)
                                .map_or("?".to_string(), |n| n.to_string())
                        };
                        let counts = format!(
                            "{} full flushes, {} window reuses, {} mismatches",
                            count("full_flushes"),
                            count("window_reuses"),
                            count("mismatches")
                        );
                        println!("test {name} ... ok ({counts})");
                        title = format!("workload, {} (deferred: {counts})", arch.word());
                    } else {
                        println!("test {name} ... ok");
                    }
                    TestRecord {
                        name: name.into(),
                        failure: None,
                        shown_live: true,
                    }
                }
                Err(reason) => {
                    eprintln!(
                        "xtask: workload serial log: {}",
                        crate::paths::shown(&report.log_path)
                    );
                    failed_record(name, reason)
                }
            },
        };
        records.push(record);
    }
    SuiteResult {
        title,
        arch,
        records,
    }
}

/// The whole suite on `cpus` CPUs.
fn run_suite(qemu: &Path, kernel: &Path, cpus: u32, options: &TestOptions) -> SuiteResult {
    let arch = options.machine.arch;
    let title = format!(
        "kernel suite, {}, {cpus} CPU{}",
        arch.word(),
        if cpus == 1 { "" } else { "s" }
    );
    let fail = |name: &str, reason: String| SuiteResult {
        title: title.clone(),
        arch,
        records: vec![failed_record(name, reason)],
    };
    let listed = match list_tests(qemu, kernel, cpus, options) {
        Ok(listed) => listed,
        Err(reason) => return fail("<list boot>", reason),
    };
    let boots = match plan_boots(&listed, options.filter.as_deref()) {
        Ok(boots) => boots,
        Err(reason) => {
            eprintln!("xtask: {reason}");
            return fail("<test selection>", reason);
        }
    };
    let test_count: usize = boots.iter().map(|b| b.expected.len()).sum();
    println!();
    println!(
        "running {test_count} kernel test{} on {cpus} {} CPU{} ({} boot{})",
        if test_count == 1 { "" } else { "s" },
        arch.word(),
        if cpus == 1 { "" } else { "s" },
        boots.len(),
        if boots.len() == 1 { "" } else { "s" },
    );
    let records = boots
        .iter()
        .flat_map(|boot| run_planned_boot(qemu, kernel, cpus, boot, options))
        .collect();
    SuiteResult {
        title,
        arch,
        records,
    }
}

/// Boots `mode=list`; the error is the reason the list cannot be trusted.
fn list_tests(
    qemu: &Path,
    kernel: &Path,
    cpus: u32,
    options: &TestOptions,
) -> Result<Vec<ListedTest>, String> {
    let verbose = options.machine.verbose;
    let spec = BootSpec {
        mode: BootMode::List,
        test: None,
        cpus,
        machine: &options.machine,
        extra_words: Vec::new(),
    };
    let mut listed = Vec::new();
    let mut announced = None;
    let report = boot_kernel(qemu, kernel, &spec, &format!("list-cpus{cpus}"), |line| {
        if verbose {
            println!("  | {line}");
        }
        match parse_line(line) {
            Some(KernelLine::Listed(test)) => listed.push(test),
            Some(KernelLine::ListEnd { count }) => announced = Some(count),
            _ => {}
        }
    })?;
    if !report.verdict.is_success() {
        report.print_failure("listing the kernel tests", !verbose);
        return Err(format!("listing the kernel tests: {}", report.verdict));
    }
    let problem = match announced {
        None => Some("the test list has no `qmk: listed N` line".to_string()),
        Some(count) if count != listed.len() => Some(format!(
            "the kernel says it listed {count} tests, xtask read {}",
            listed.len()
        )),
        Some(_) => None,
    };
    if let Some(problem) = problem {
        eprintln!(
            "xtask: {problem}; see {}",
            crate::paths::shown(&report.log_path)
        );
        return Err(problem);
    }
    Ok(listed)
}

/// One `mode=test` boot; prints each result as it arrives, then what the kernel's own
/// lines did not say (missing results, a crash).
fn run_planned_boot(
    qemu: &Path,
    kernel: &Path,
    cpus: u32,
    boot: &PlannedBoot,
    options: &TestOptions,
) -> Vec<TestRecord> {
    let verbose = options.machine.verbose;
    let spec = BootSpec {
        mode: BootMode::Test,
        test: boot.test_arg.as_deref(),
        cpus,
        machine: &options.machine,
        extra_words: Vec::new(),
    };
    let label = format!("test-cpus{cpus}-{}", boot.label());
    let mut reported: Vec<(String, TestOutcome)> = Vec::new();
    let mut kernel_summary = None;
    let mut kernel_report = None;
    let report = boot_kernel(qemu, kernel, &spec, &label, |line| {
        if verbose {
            println!("  | {line}");
        }
        match parse_line(line) {
            Some(KernelLine::Result { name, outcome }) => {
                println!("{}", result_line(&name, &outcome));
                reported.push((name, outcome));
            }
            Some(KernelLine::Summary { passed, failed }) => kernel_summary = Some((passed, failed)),
            // The first report of a crash is the cause; later lines are its details.
            Some(other) => {
                if let Some(failure) = other.failure_report() {
                    kernel_report.get_or_insert(failure);
                }
            }
            None => {}
        }
    });
    let report = match report {
        Ok(report) => report,
        Err(reason) => {
            eprintln!("xtask: {reason}");
            return vec![failed_record(&format!("<boot {}>", boot.label()), reason)];
        }
    };
    if !report.verdict.is_success() {
        let what = format!("boot `{}`", spec.kernel_cmdline());
        report.print_failure(&what, !verbose);
    }
    if let Some(summary) = kernel_summary {
        let from_lines = reported.iter().fold((0, 0), |(p, f), (_, outcome)| {
            if outcome.passed() {
                (p + 1, f)
            } else {
                (p, f + 1)
            }
        });
        if summary != from_lines {
            eprintln!(
                "xtask: warning: the kernel's summary says {} passed, {} failed, but its \
                 result lines say {} and {}",
                summary.0, summary.1, from_lines.0, from_lines.1
            );
        }
    }
    let records = judge_boot(boot, &reported, report.verdict, kernel_report.as_deref());
    for record in records.iter().filter(|r| !r.shown_live) {
        // Only failures are ever not shown live.
        let reason = record.failure.as_deref().unwrap_or("?");
        println!("test {} ... FAILED ({reason})", record.name);
    }
    records
}

/// How a kernel result is shown, in the style of `cargo test`.
fn result_line(name: &str, outcome: &TestOutcome) -> String {
    match outcome {
        TestOutcome::Passed => format!("test {name} ... ok"),
        TestOutcome::PanickedAsExpected(message) => {
            format!("test {name} ... ok (panicked as expected: {message})")
        }
        TestOutcome::Skipped(reason) => format!("test {name} ... ok (skipped: {reason})"),
        TestOutcome::Failed => format!("test {name} ... FAILED"),
    }
}

/// A failure that no kernel result line announced: prints it like a test result (so
/// the list of results is complete) and returns its record.
fn failed_record(name: &str, reason: String) -> TestRecord {
    println!("test {name} ... FAILED ({reason})");
    TestRecord {
        name: name.to_string(),
        failure: Some(reason),
        shown_live: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_quotes_the_workload_boot() {
        let words = format!("mode=run ops={WORKLOAD_TEST_OPS} on {WORKLOAD_TEST_CPUS} CPUs");
        let help = match crate::cli::parse_args(["xtask", "test", "--help"]) {
            Err(crate::cli::CliError::Help(help)) => help.to_string(),
            other => panic!("`test --help` gave {other:?}"),
        };
        // The help is wrapped to the terminal's width.
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(help.contains(&words), "{words}\n{help}");
    }

    #[test]
    fn result_lines_look_like_cargo_test() {
        assert_eq!(result_line("a", &TestOutcome::Passed), "test a ... ok");
        assert_eq!(result_line("a", &TestOutcome::Failed), "test a ... FAILED");
        assert_eq!(
            result_line("a", &TestOutcome::PanickedAsExpected("PTE busy".into())),
            "test a ... ok (panicked as expected: PTE busy)"
        );
    }
}
