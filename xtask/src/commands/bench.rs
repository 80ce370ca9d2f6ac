//! `cargo xtask bench`: the benchmark (DESIGN.md §6, `docs/kernel-protocol.md`).
//!
//! One boot on 1 CPU under `-icount shift=0` (and `icount=1` for the kernel) gives
//! exact instruction counts; one boot per CPU count without icount gives throughput
//! (`-icount` with several CPUs hangs QEMU 7.2, DESIGN.md §5). Then: a table on
//! stdout, `bench.json` and `throughput.svg` in `--out`.
//!
//! A missed target does not fail the command (it is a measurement); a failed boot or
//! a missing variant does.

use std::fs;
use std::path::{Path, PathBuf};

use super::{boot_kernel, Failure};
use crate::bench::document::{bench_document, BenchConfig, BootEntry};
use crate::bench::figures::compute_figures;
use crate::bench::lines::{BenchBoot, BenchBootLines};
use crate::bench::plot::throughput_svg;
use crate::bench::table::render_report;
use crate::bench::targets::{check_targets, TargetStatus};
use crate::boot_config::{BootMode, BootSpec};
use crate::cli::{BenchOptions, MachineOptions};
use crate::kernel_build::build_kernel;
use crate::paths;
use crate::qemu_setup::locate_or_install_qemu;

/// One planned boot.
struct BenchRun {
    label: String,
    cpus: u32,
    icount: bool,
}

/// One boot's outcome.
struct BootOutcome {
    label: String,
    kernel_cmdline: String,
    result: Result<BenchBoot, String>,
}

/// Runs every boot, then reports.
pub fn bench(options: &BenchOptions) -> Result<(), Failure> {
    let kernel = build_kernel(options.machine.verbose)?;
    let qemu = locate_or_install_qemu()?;
    let runs = plan(&options.cpu_counts);
    let mut outcomes = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        eprintln!(
            "xtask: bench boot {}/{}: {} CPU{}{}",
            i + 1,
            runs.len(),
            run.cpus,
            if run.cpus == 1 { "" } else { "s" },
            if run.icount {
                ", icount (instruction counts)"
            } else {
                " (throughput)"
            }
        );
        outcomes.push(boot_once(&qemu, &kernel, run, options));
    }

    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.label)))
        .collect();
    for failure in &failures {
        eprintln!("xtask: bench boot {failure}");
    }
    let Some(Ok(icount)) = outcomes.first().map(|o| o.result.as_ref()) else {
        return Err(Failure::Error(
            "the icount boot failed, so no instruction counts; nothing to report".into(),
        ));
    };
    let good: Vec<&BootOutcome> = outcomes.iter().filter(|o| o.result.is_ok()).collect();
    // `good` starts with the icount boot (it succeeded, see above); the rest are
    // the throughput boots that succeeded.
    let throughput: Vec<BenchBoot> = good[1..]
        .iter()
        .filter_map(|o| o.result.as_ref().ok().cloned())
        .collect();
    let figures = compute_figures(icount, &throughput);
    let targets = check_targets(&figures);
    let cpu_counts: Vec<u32> = throughput.iter().map(|b| b.info.cpus).collect();
    println!();
    print!(
        "{}",
        render_report(
            &figures,
            &cpu_counts,
            icount.overhead_ticks_per_pair.unwrap_or(0),
            &targets
        )
    );

    let config = BenchConfig {
        memory_mib: options.machine.memory_mib,
        dmap_mib: options.machine.dmap_mib,
        pairs: options.pairs,
        seed: options.machine.seed,
        throughput_cpus: cpu_counts,
    };
    let entries: Vec<BootEntry> = good
        .iter()
        .filter_map(|o| {
            Some(BootEntry {
                label: o.label.clone(),
                kernel_cmdline: o.kernel_cmdline.clone(),
                boot: o.result.as_ref().ok()?,
            })
        })
        .collect();
    let out_dir = options
        .out_dir
        .clone()
        .unwrap_or_else(|| paths::repo_root().join("target/bench"));
    let json = bench_document(&config, &entries, &figures, &targets).render();
    let json_path = write_output(&out_dir, "bench.json", &json)?;
    let svg_path = write_output(&out_dir, "throughput.svg", &throughput_svg(&figures))?;
    println!();
    println!(
        "wrote {} and {}",
        paths::shown(&json_path),
        paths::shown(&svg_path)
    );

    let missed = targets
        .iter()
        .filter(|t| t.status == TargetStatus::Missed)
        .count();
    if missed > 0 {
        eprintln!("xtask: {missed} target(s) missed (a measurement, not a failure; see above)");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::Error(format!(
            "{} of {} bench boot(s) failed: {}",
            failures.len(),
            outcomes.len(),
            failures.join("; ")
        )))
    }
}

/// The icount boot first (its counts are the reference), then one per CPU count.
fn plan(cpu_counts: &[u32]) -> Vec<BenchRun> {
    std::iter::once(BenchRun {
        label: "bench-icount-cpus1".into(),
        cpus: 1,
        icount: true,
    })
    .chain(cpu_counts.iter().map(|&cpus| BenchRun {
        label: format!("bench-cpus{cpus}"),
        cpus,
        icount: false,
    }))
    .collect()
}

/// Boots once and checks the boot is complete.
fn boot_once(qemu: &Path, kernel: &Path, run: &BenchRun, options: &BenchOptions) -> BootOutcome {
    let machine = MachineOptions {
        icount: run.icount,
        ..options.machine.clone()
    };
    let mut extra_words: Vec<String> = options
        .pairs
        .map(|p| format!("pairs={p}"))
        .into_iter()
        .collect();
    if run.icount {
        extra_words.push("icount=1".into());
    }
    let spec = BootSpec {
        mode: BootMode::Bench,
        test: None,
        cpus: run.cpus,
        machine: &machine,
        extra_words,
    };
    let verbose = machine.verbose;
    let mut lines = BenchBootLines::default();
    let report = boot_kernel(qemu, kernel, &spec, &run.label, |line| {
        if verbose {
            println!("  | {line}");
        }
        lines.observe(line);
    });
    let result = match report {
        Err(reason) => Err(reason),
        Ok(report) if !report.verdict.is_success() => {
            report.print_failure(&format!("bench boot `{}`", spec.kernel_cmdline()), !verbose);
            Err(match &lines.crash {
                Some(crash) => format!("{}; the kernel said: {crash}", report.verdict),
                None => report.verdict.to_string(),
            })
        }
        Ok(report) => lines
            .complete(run.cpus, run.icount)
            .map_err(|reason| format!("{reason} (serial log: {})", paths::shown(&report.log_path))),
    };
    BootOutcome {
        label: run.label.clone(),
        kernel_cmdline: spec.kernel_cmdline(),
        result,
    }
}

/// Writes `name` in `dir` (created if needed) and returns its path.
fn write_output(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    fs::write(&path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
