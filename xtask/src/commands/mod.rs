//! The commands, one module each. They compose the building blocks (kernel build,
//! QEMU setup, boots, protocol parsing) and decide what to print.
//!
//! Adding a command: in [`crate::cli`], its clap arguments (a variant of the parsed
//! commands) and a variant of [`crate::cli::Command`] with its validated options; a
//! module here with a function returning `Result<(), Failure>`; and a line in `main`'s
//! dispatch.

pub mod bench;
pub mod build;
pub mod run;
pub mod test;

use std::path::Path;

use crate::boot_config::BootSpec;
use crate::paths;
use crate::qemu::{run_boot, Boot, BootReport};

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Something stopped the command; the message (one line) says what.
    Error(String),
    /// Tests or boots failed and the details are already printed.
    Reported,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Error(message)
    }
}

/// Boots `kernel` as `spec` says, logging to `target/qmk-logs/LABEL.log` (or
/// `$QMK_LOG_DIR`; `aarch64-LABEL.log` for an aarch64 boot, so that the two
/// architectures' logs sit side by side), and calls `on_serial_line` for each serial
/// line.
pub fn boot_kernel(
    qemu: &Path,
    kernel: &Path,
    spec: &BootSpec,
    label: &str,
    on_serial_line: impl FnMut(&str),
) -> Result<BootReport, String> {
    let boot = Boot {
        qemu,
        args: spec.qemu_args(kernel),
        timeout: spec.machine.timeout,
        log_path: paths::log_dir().join(paths::log_file_name(&log_label(spec, label))),
        verbose: spec.machine.verbose,
    };
    run_boot(&boot, on_serial_line)
}

/// `label`, prefixed with the architecture unless it is x86_64 (whose log names
/// predate the aarch64 port).
fn log_label(spec: &BootSpec, label: &str) -> String {
    match spec.machine.arch {
        crate::arch::Arch::X86_64 => label.to_string(),
        arch => format!("{}-{label}", arch.word()),
    }
}
