//! `cargo xtask run`: boot the kernel's demo and stream its output.

use super::{boot_kernel, Failure};
use crate::boot_config::{BootMode, BootSpec};
use crate::cli::RunOptions;
use crate::kernel_build::build_kernel;
use crate::paths;
use crate::qemu_setup::locate_or_install_qemu;

/// Builds and boots the kernel in `mode=run`, printing every serial line on stdout as
/// it arrives. Fails unless the kernel reports success.
pub fn run(options: &RunOptions) -> Result<(), Failure> {
    let machine = &options.machine;
    let kernel = build_kernel(machine.verbose)?;
    let qemu = locate_or_install_qemu()?;
    let spec = BootSpec {
        mode: BootMode::Run,
        test: None,
        cpus: options.cpus,
        machine,
    };
    let label = format!("run-cpus{}", options.cpus);
    eprintln!(
        "xtask: booting qmk with {} CPU(s), {} MiB (kernel command line: {})",
        options.cpus,
        machine.memory_mib,
        spec.kernel_cmdline()
    );
    let report = boot_kernel(&qemu, &kernel, &spec, &label, |line| println!("{line}"))?;
    if report.verdict.is_success() {
        eprintln!(
            "xtask: {}; serial log: {}",
            report.verdict,
            paths::shown(&report.log_path)
        );
        Ok(())
    } else {
        // The serial output is already on the terminal, right above: no tail.
        report.print_failure("the boot", false);
        Err(Failure::Reported)
    }
}
