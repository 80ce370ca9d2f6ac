//! `cargo xtask bench`: the benchmark (DESIGN.md §6, `docs/kernel-protocol.md`).
//!
//! Two kernels: the checked build (`cargo build --release` in `qmk/`, the default
//! features) and the lean build (`--no-default-features`: no contract checks, no
//! statistics; `qmk/target/lean/`). One boot of each on 1 CPU under `-icount shift=0`
//! (and `icount=1` for the kernel) gives exact instruction counts; one boot of the
//! checked kernel per CPU count without icount gives throughput (`-icount` with
//! several CPUs hangs QEMU 7.2, DESIGN.md §5). Then: a table on stdout, `bench.json`
//! and `throughput.svg` in `--out`.
//!
//! A missed target does not fail the command (it is a measurement); a failed boot or
//! a missing variant does. With `$QMK_KERNEL` but no `$QMK_LEAN_KERNEL` there is no
//! lean kernel to boot: its boot is left out and its targets are not measured.

use std::fs;
use std::path::{Path, PathBuf};

use super::{boot_kernel, Failure};
use crate::bench::document::{bench_document, BenchConfig, BootEntry};
use crate::bench::figures::compute_figures;
use crate::bench::lines::{BenchBoot, BenchBootLines};
use crate::bench::plot::throughput_svg;
use crate::bench::table::{render_report, Overheads};
use crate::bench::targets::{check_targets, TargetStatus};
use crate::boot_config::{BootMode, BootSpec};
use crate::cli::{BenchOptions, MachineOptions};
use crate::kernel_build::{build_kernel, build_kernel_as, KernelBuild, LEAN_KERNEL_OVERRIDE_VAR};
use crate::paths;
use crate::qemu_setup::locate_or_install_qemu;

/// One planned boot.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BenchRun {
    label: String,
    cpus: u32,
    icount: bool,
    build: KernelBuild,
}

/// One boot's outcome.
struct BootOutcome {
    label: String,
    kernel_cmdline: String,
    run: BenchRun,
    result: Result<BenchBoot, String>,
}

/// Runs every boot, then reports.
pub fn bench(options: &BenchOptions) -> Result<(), Failure> {
    let verbose = options.machine.verbose;
    let arch = options.machine.arch;
    let checked = build_kernel(arch, verbose)?;
    let lean = build_kernel_as(KernelBuild::Lean, arch, verbose)?;
    if lean.is_none() {
        eprintln!(
            "xtask: no lean kernel (a prebuilt kernel is given, and {LEAN_KERNEL_OVERRIDE_VAR} \
             names none): its boot is left out"
        );
    }
    let qemu = locate_or_install_qemu(arch)?;
    let runs = plan(&options.cpu_counts, lean.is_some());
    let mut outcomes = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        eprintln!(
            "xtask: bench boot {}/{}: {} CPU{}{}, {} kernel",
            i + 1,
            runs.len(),
            run.cpus,
            if run.cpus == 1 { "" } else { "s" },
            if run.icount {
                ", icount (instruction counts)"
            } else {
                " (throughput)"
            },
            run.build.word()
        );
        let kernel = match run.build {
            KernelBuild::Checked => &checked,
            KernelBuild::Lean => lean.as_ref().expect("planned only with a lean kernel"),
        };
        outcomes.push(boot_once(&qemu, kernel, run, options));
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
    let lean_icount = good
        .iter()
        .find(|o| o.run.icount && o.run.build == KernelBuild::Lean)
        .and_then(|o| o.result.as_ref().ok());
    let throughput: Vec<BenchBoot> = good
        .iter()
        .filter(|o| !o.run.icount)
        .filter_map(|o| o.result.as_ref().ok().cloned())
        .collect();
    let figures = compute_figures(icount, lean_icount, &throughput);
    let targets = check_targets(&figures);
    let cpu_counts: Vec<u32> = throughput.iter().map(|b| b.info.cpus).collect();
    let overheads = Overheads {
        checked: icount.overhead_ticks_per_pair.unwrap_or(0),
        lean: lean_icount.map(|boot| boot.overhead_ticks_per_pair.unwrap_or(0)),
    };
    println!();
    print!(
        "{}",
        render_report(&figures, &cpu_counts, overheads, &targets)
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
    let json = bench_document(&config, &entries, &figures, &targets).to_json();
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

/// The checked icount boot first (its counts are the reference), the lean icount boot
/// (when there is a lean kernel), then one checked boot per CPU count.
fn plan(cpu_counts: &[u32], with_lean: bool) -> Vec<BenchRun> {
    let icount = |label: &str, build| BenchRun {
        label: label.into(),
        cpus: 1,
        icount: true,
        build,
    };
    let mut runs = vec![icount("bench-icount-cpus1", KernelBuild::Checked)];
    if with_lean {
        runs.push(icount("bench-lean-icount-cpus1", KernelBuild::Lean));
    }
    runs.extend(cpu_counts.iter().map(|&cpus| BenchRun {
        label: format!("bench-cpus{cpus}"),
        cpus,
        icount: false,
        build: KernelBuild::Checked,
    }));
    runs
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
            .complete(run.cpus, run.icount, run.build)
            .map_err(|reason| format!("{reason} (serial log: {})", paths::shown(&report.log_path))),
    };
    BootOutcome {
        label: run.label.clone(),
        kernel_cmdline: spec.kernel_cmdline(),
        run: run.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_boots_checked_icount_lean_icount_then_throughput() {
        let runs = plan(&[1, 2, 4], true);
        let summary: Vec<(&str, u32, bool, KernelBuild)> = runs
            .iter()
            .map(|r| (r.label.as_str(), r.cpus, r.icount, r.build))
            .collect();
        assert_eq!(
            summary,
            [
                ("bench-icount-cpus1", 1, true, KernelBuild::Checked),
                ("bench-lean-icount-cpus1", 1, true, KernelBuild::Lean),
                ("bench-cpus1", 1, false, KernelBuild::Checked),
                ("bench-cpus2", 2, false, KernelBuild::Checked),
                ("bench-cpus4", 4, false, KernelBuild::Checked),
            ]
        );
        let without_lean = plan(&[2], false);
        assert_eq!(without_lean.len(), 2);
        assert!(without_lean.iter().all(|r| r.build == KernelBuild::Checked));
    }
}
