//! `cargo xtask`: builds the `qmk` kernel, boots it under QEMU and turns its serial
//! output into test results. See `cargo xtask help` and `docs/kernel-protocol.md`.
//!
//! Layout, one job per module:
//! - [`cli`]: command line to a validated [`cli::Command`];
//! - [`arch`]: what differs per architecture (target, QEMU, its package);
//! - [`kernel_build`], [`host_checks`]: the cargo invocations;
//! - [`qemu_setup`]: find or install QEMU; [`boot_config`]: kernel and QEMU command
//!   lines; [`qemu`]: run one boot (stream, log, timeout), with [`serial_text`] and
//!   [`serial_tail`]; [`verdict`]: exit status;
//! - [`protocol`]: parse the kernel's test lines, with [`fields`] for `KEY=VALUE`
//!   words; [`suite`]: plan boots, judge results;
//! - [`workload`]: the `mode=run` lines, live progress display, summary and verdict;
//! - [`bench`](mod@bench): the `mode=bench` lines, figures, targets, table, JSON and SVG plot;
//! - [`static_check`]: the check of the kernel's machine code: no lock on any
//!   enter/remove path, `invlpg` and CR3 writes exactly where each instance needs them;
//! - [`commands`]: `build`, `run`, `test`, `bench`.
//!
//! Exit status: 0 success, 1 something failed, 2 bad command line.

#![deny(unsafe_code)]

mod arch;
mod bench;
mod boot_config;
mod cli;
mod commands;
mod fields;
mod host_checks;
mod kernel_build;
mod paths;
mod protocol;
mod qemu;
mod qemu_setup;
mod serial_tail;
mod serial_text;
mod static_check;
mod suite;
mod verdict;
mod workload;

use std::process::ExitCode;

use cli::{CliError, Command};
use commands::Failure;

/// Exit status for a build, boot or test that failed.
const EXIT_FAILURE: u8 = 1;
/// Exit status for a command line we cannot act on.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let command = match cli::parse_args(std::env::args_os()) {
        Ok(command) => command,
        Err(CliError::Help(help)) => {
            // Stdout gone (e.g. `| head`) is no reason to fail.
            let _ = help.print();
            return ExitCode::SUCCESS;
        }
        Err(CliError::Usage(message)) => {
            eprintln!("xtask: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = match &command {
        Command::Build(options) => commands::build::build(options),
        Command::Run(options) => commands::run::run(options),
        Command::Test(options) => commands::test::test(options),
        Command::Bench(options) => commands::bench::bench(options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Error(message)) => {
            eprintln!("xtask: {message}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Reported) => ExitCode::from(EXIT_FAILURE),
    }
}
