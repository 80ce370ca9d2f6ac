//! The architectures `qmk` runs on, and everything xtask must know per architecture:
//! the kernel's target triple and ELF, the QEMU program and its Debian package, how a
//! boot's QEMU arguments differ, and the Rust target to install when it is missing.
//!
//! x86_64 boots through PVH on `qemu-system-x86_64` and reports its status through
//! `isa-debug-exit`; aarch64 boots on `qemu-system-aarch64 -M virt,gic-version=3`
//! (Cortex-A72, PSCI SMP) and reports the same statuses (33/35) through semihosting
//! (`docs/kernel-protocol.md`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::ValueEnum;

use crate::paths;

/// One architecture the kernel is built for and booted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Arch {
    /// PVH boot on qemu-system-x86_64.
    #[default]
    #[value(name = "x86_64")]
    X86_64,
    /// QEMU's virt machine (GICv3, PSCI) on qemu-system-aarch64.
    #[value(name = "aarch64")]
    Aarch64,
}

impl Arch {
    /// Both, in the order `cargo xtask test` runs them.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The name users type and reports print.
    pub fn word(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The kernel's target triple. x86_64 builds for the host triple made
    /// freestanding by flags (`qmk/.cargo/config.toml`, DESIGN.md §5).
    pub fn target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-none",
        }
    }

    /// The ELF `cargo build --release --target TARGET` leaves under `target_dir`.
    pub fn elf_in(self, target_dir: PathBuf) -> PathBuf {
        target_dir.join(self.target()).join("release/qmk")
    }

    /// The QEMU program for this architecture.
    pub fn qemu_program(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The Debian package that provides [`qemu_program`](Self::qemu_program).
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Aarch64 => "qemu-system-arm",
        }
    }

    /// The arguments that make a boot of this architecture from the machine-neutral
    /// ones `boot_config` writes (which end the run through x86_64's
    /// `isa-debug-exit`): on aarch64, no `isa-debug-exit` (the kernel exits through
    /// semihosting with the same statuses), a GICv3 `virt` machine, a Cortex-A72 (the
    /// CPU the port is tested on, with a PMU that counts instructions under icount),
    /// semihosting on.
    pub fn adapt_qemu_args(self, args: Vec<String>) -> Vec<String> {
        if self == Arch::X86_64 {
            return args;
        }
        let mut adapted = Vec::with_capacity(args.len() + 4);
        let mut words = args.into_iter();
        while let Some(word) = words.next() {
            match word.as_str() {
                "-device" => {
                    let device = words.next().unwrap_or_default();
                    if !device.starts_with("isa-debug-exit") {
                        adapted.extend([word, device]);
                    }
                }
                "-cpu" => {
                    let _x86_64_cpu = words.next();
                    adapted.extend(["-cpu".into(), "cortex-a72".into()]);
                }
                _ => adapted.push(word),
            }
        }
        adapted.extend([
            "-M".into(),
            "virt,gic-version=3".into(),
            "-semihosting".into(),
        ]);
        adapted
    }

    /// Makes sure the Rust target is installed: `rustup target add TARGET` when it is
    /// missing (any user may run it), or the command to run when there is no rustup.
    /// x86_64's target is the host's, always there.
    pub fn ensure_rust_target(self) -> Result<(), String> {
        if self == Arch::X86_64 || rust_target_installed(self.target()) {
            return Ok(());
        }
        let target = self.target();
        eprintln!("xtask: Rust target {target} missing; running `rustup target add {target}`");
        let status = Command::new("rustup")
            .args(["target", "add", target])
            .current_dir(paths::kernel_dir())
            .stdin(Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!(
                "`rustup target add {target}` failed ({status}); run it by hand"
            )),
            Err(error) => Err(format!(
                "the Rust target {target} is missing and rustup cannot run ({error}); install \
                 it with: rustup target add {target}"
            )),
        }
    }

    /// The one-line hint for a missing QEMU: the command that installs it, or, as
    /// root, `None` (the caller installs it).
    pub fn missing_qemu_hint(self, is_root: bool) -> Option<String> {
        (!is_root).then(|| {
            format!(
                "{} not found; install it with: sudo apt-get update && sudo \
                 DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
                self.qemu_program(),
                self.qemu_package()
            )
        })
    }
}

/// Whether rustc's sysroot (the toolchain `qmk/` builds with) has `target`'s
/// prebuilt `core`.
fn rust_target_installed(target: &str) -> bool {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(paths::kernel_dir())
        .output();
    match sysroot {
        Ok(output) if output.status.success() => {
            let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
            PathBuf::from(sysroot)
                .join("lib/rustlib")
                .join(target)
                .join("lib")
                .is_dir()
        }
        // No rustc to ask: let cargo say what is wrong.
        _ => true,
    }
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
        assert_eq!(Arch::X86_64.adapt_qemu_args(x86_64.clone()), x86_64);
        assert_eq!(
            Arch::Aarch64.adapt_qemu_args(x86_64),
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

    #[test]
    fn words_targets_and_packages() {
        for arch in Arch::ALL {
            assert_eq!(
                arch.to_possible_value().unwrap().get_name(),
                arch.word(),
                "clap's value is the word"
            );
        }
        assert!(Arch::Aarch64
            .elf_in(PathBuf::from("t"))
            .ends_with("t/aarch64-unknown-none/release/qmk"));
        let hint = Arch::Aarch64.missing_qemu_hint(false).unwrap();
        assert!(
            hint.contains("apt-get install -y qemu-system-arm"),
            "{hint}"
        );
        assert!(!hint.contains('\n'));
        assert_eq!(Arch::Aarch64.missing_qemu_hint(true), None);
    }
}
