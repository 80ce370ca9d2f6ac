//! TEMPORARY (issue 13): booting the aarch64 `qmk` with `QMK_ARCH=aarch64`.
//!
//! Until xtask's command line (being rewritten on clap in main) gets an `--arch`
//! option, this module is the one place that reads the environment variable
//! [`ARCH_VAR`], and the one place that knows what an aarch64 boot needs: the
//! kernel target and ELF path, the QEMU program and its Debian package, and how the
//! x86_64 QEMU arguments change for QEMU's `virt` machine. `kernel_build`,
//! `qemu_setup` and `boot_config` each ask [`selected`] at one spot.
//!
//! What works today: `QMK_ARCH=aarch64 cargo xtask test --kernel-only --cpus 1,2,4,8`
//! boots the aarch64 kernel's suite (the kernel core runs there) and the short
//! workload; the static check, which reads x86_64 instructions, is skipped with a
//! note ([`STATIC_CHECK_NOTE`]). TODO(issue 13): replace the variable by `--arch
//! aarch64` in the new CLI; port the static check's instruction shapes to aarch64.

use std::env;
use std::path::PathBuf;

use crate::paths;

/// The environment variable that selects the aarch64 kernel (`aarch64`); any other
/// value, or none, means x86_64.
pub const ARCH_VAR: &str = "QMK_ARCH";

/// The kernel's target triple on aarch64.
pub const TARGET: &str = "aarch64-unknown-none";
/// QEMU for aarch64, and the Debian package that has it.
pub const QEMU_PROGRAM: &str = "qemu-system-aarch64";
pub const QEMU_PACKAGE: &str = "qemu-system-arm";

/// Why `test` skips the static check for aarch64.
pub const STATIC_CHECK_NOTE: &str = "static-check skipped on aarch64: it checks the x86_64 \
     instruction shape of the hot path (TODO(issue 13): aarch64 shapes)";

/// True when `QMK_ARCH=aarch64`.
pub fn selected() -> bool {
    env::var(ARCH_VAR).is_ok_and(|value| value == "aarch64")
}

/// The ELF `cargo build --release --target aarch64-unknown-none` leaves in `qmk/`.
pub fn kernel_elf() -> PathBuf {
    paths::kernel_dir().join(format!("target/{TARGET}/release/qmk"))
}

/// The x86_64 QEMU arguments made fit for `qemu-system-aarch64 -M virt`: no
/// `isa-debug-exit` (the kernel ends the run with a status through semihosting
/// instead, with the same statuses 33/35), a GICv3 `virt` machine, a Cortex-A72 (the
/// CPU the port is tested on), semihosting on.
pub fn adapt_qemu_args(x86_64_args: Vec<String>) -> Vec<String> {
    let mut args = Vec::with_capacity(x86_64_args.len() + 4);
    let mut words = x86_64_args.into_iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-device" => {
                let device = words.next().unwrap_or_default();
                if !device.starts_with("isa-debug-exit") {
                    args.extend([word, device]);
                }
            }
            "-cpu" => {
                let _x86_64_cpu = words.next();
                args.extend(["-cpu".into(), "cortex-a72".into()]);
            }
            _ => args.push(word),
        }
    }
    args.extend([
        "-M".into(),
        "virt,gic-version=3".into(),
        "-semihosting".into(),
    ]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_machine_arguments_become_virt_ones() {
        let x86_64: Vec<String> = [
            "-kernel",
            "qmk",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-cpu",
            "max",
            "-smp",
            "2",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            adapt_qemu_args(x86_64),
            [
                "-kernel",
                "qmk",
                "-cpu",
                "cortex-a72",
                "-smp",
                "2",
                "-M",
                "virt,gic-version=3",
                "-semihosting"
            ]
        );
    }
}
