//! `cargo xtask run`: boot the kernel's page workload with a live progress display,
//! then print its summary table. Also the workload boot of `cargo xtask test`.

use std::io::{self, IsTerminal};
use std::path::Path;

use super::{boot_kernel, Failure};
use crate::boot_config::{BootMode, BootSpec};
use crate::cli::{Invalidation, MachineOptions, RunOptions, WorkloadStop};
use crate::kernel_build::build_kernel;
use crate::paths;
use crate::qemu::BootReport;
use crate::qemu_setup::locate_or_install_qemu;
use crate::workload::lines::{parse_workload_line, WorkloadLine};
use crate::workload::progress::{DisplayStyle, ProgressDisplay};
use crate::workload::summary::WorkloadTally;

/// Bold red on a terminal: a mismatch is the one thing that must not scroll by unseen.
const ALARM_START: &str = "\x1b[1;31m";
const ALARM_END: &str = "\x1b[0m";

/// Builds and boots the kernel in `mode=run`; fails unless the workload succeeded.
pub fn run(options: &RunOptions) -> Result<(), Failure> {
    let machine = &options.machine;
    let kernel = build_kernel(machine.arch, machine.verbose)?;
    let qemu = locate_or_install_qemu(machine.arch)?;
    let spec = workload_spec(options.cpus, machine, options.stop, options.invalidation);
    eprintln!(
        "xtask: booting the {} qmk with {} CPU(s), {} MiB, direct map {} MiB, {} \
         invalidation (kernel command line: {})",
        machine.arch.word(),
        options.cpus,
        machine.memory_mib,
        machine.dmap_mib,
        options.invalidation.word(),
        spec.kernel_cmdline()
    );
    let label = workload_label("run", options.cpus, options.invalidation);
    let (tally, report) = boot_workload(&qemu, &kernel, &spec, &label, true)?;
    if tally.has_summary() {
        println!();
        print!("{}", tally.render_table());
    }
    match tally.verdict(report.verdict) {
        Ok(()) => {
            eprintln!(
                "xtask: run ok; serial log: {}",
                paths::shown(&report.log_path)
            );
            Ok(())
        }
        Err(reason) => {
            eprintln!("xtask: serial log: {}", paths::shown(&report.log_path));
            Err(Failure::Error(format!("run failed: {reason}")))
        }
    }
}

/// The boot of a workload: `mode=run` plus `ops=`/`secs=` and, for the deferred
/// instance, `invalidation=deferred`.
pub fn workload_spec(
    cpus: u32,
    machine: &MachineOptions,
    stop: Option<WorkloadStop>,
    invalidation: Invalidation,
) -> BootSpec<'_> {
    BootSpec {
        mode: BootMode::Run,
        test: None,
        cpus,
        machine,
        extra_words: stop
            .map(WorkloadStop::kernel_word)
            .into_iter()
            .chain(invalidation.kernel_word())
            .collect(),
    }
}

/// The serial log's label of a workload boot, e.g. `run-cpus4` or
/// `workload-cpus4-deferred`.
pub fn workload_label(prefix: &str, cpus: u32, invalidation: Invalidation) -> String {
    match invalidation {
        Invalidation::Strict => format!("{prefix}-cpus{cpus}"),
        Invalidation::Deferred => format!("{prefix}-cpus{cpus}-deferred"),
    }
}

/// Boots a workload, showing progress live on stdout (in place on a terminal, as
/// periodic lines otherwise) and mismatches prominently. Other kernel lines are shown
/// only if `show_kernel_lines`; `summary` lines never are (the table shows them).
pub fn boot_workload(
    qemu: &Path,
    kernel: &Path,
    spec: &BootSpec,
    label: &str,
    show_kernel_lines: bool,
) -> Result<(WorkloadTally, BootReport), String> {
    let terminal = io::stdout().is_terminal();
    let style = if terminal {
        DisplayStyle::Terminal
    } else {
        DisplayStyle::Plain
    };
    let mut display = ProgressDisplay::new(io::stdout(), style);
    let mut tally = WorkloadTally::default();
    let report = boot_kernel(qemu, kernel, spec, label, |line| {
        tally.observe(line);
        match parse_workload_line(line) {
            Some(WorkloadLine::Progress(progress)) => display.progress(&progress),
            Some(WorkloadLine::Mismatch(mismatch)) => {
                let text = format!("!!! MISMATCH: {}", mismatch.details);
                if terminal {
                    display.line(&format!("{ALARM_START}{text}{ALARM_END}"));
                } else {
                    display.line(&text);
                }
            }
            // The workload is over: the last report goes out before the summary.
            Some(WorkloadLine::Summary { .. }) => display.finish(),
            Some(WorkloadLine::RunOk | WorkloadLine::RunFailed { .. }) => {
                display.finish();
                if show_kernel_lines {
                    display.line(line);
                }
            }
            _ if show_kernel_lines => display.line(line),
            _ => {}
        }
    });
    display.finish();
    Ok((tally, report?))
}
