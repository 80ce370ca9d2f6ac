//! Builds the `qmk` kernel for an architecture (or takes a prebuilt one from
//! `$QMK_KERNEL`), in one of two builds: the checked kernel every command boots, and
//! the lean kernel the benchmark also measures.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use crate::arch::Arch;
use crate::paths;

/// Environment variable naming a kernel ELF to boot instead of building `qmk/`
/// (used by the fake-QEMU tests, and handy to boot an older build).
pub const KERNEL_OVERRIDE_VAR: &str = "QMK_KERNEL";

/// The same for the lean kernel. When only [`KERNEL_OVERRIDE_VAR`] is set, there is
/// no lean kernel (building one next to a prebuilt checked kernel would compare two
/// different sources), and the benchmark skips its lean boot.
pub const LEAN_KERNEL_OVERRIDE_VAR: &str = "QMK_LEAN_KERNEL";

/// Which kernel: qmk's cargo features (`qmk/Cargo.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelBuild {
    /// The default features: quickmap's contract checks and statistics. What `run`,
    /// `test` and the benchmark's throughput boots use.
    Checked,
    /// `--no-default-features`: neither, as a kernel that has proven its callers
    /// would ship. Built into its own target directory, `qmk/target/lean/`, so that
    /// both builds coexist.
    Lean,
}

impl KernelBuild {
    /// The word the kernel's `bench-info` line uses (`build=checked|lean`).
    pub fn word(self) -> &'static str {
        match self {
            KernelBuild::Checked => "checked",
            KernelBuild::Lean => "lean",
        }
    }

    /// Parses [`word`](Self::word).
    pub fn from_word(word: &str) -> Option<KernelBuild> {
        match word {
            "checked" => Some(KernelBuild::Checked),
            "lean" => Some(KernelBuild::Lean),
            _ => None,
        }
    }

    /// The ELF `cargo build` leaves for `arch`.
    pub fn elf(self, arch: Arch) -> PathBuf {
        match self {
            KernelBuild::Checked => arch.elf_in(paths::kernel_dir().join("target")),
            KernelBuild::Lean => arch.elf_in(lean_target_dir()),
        }
    }

    /// `cargo` arguments, run in `qmk/`. x86_64 is `qmk/`'s default target, so its
    /// command line names none.
    fn cargo_args(self, arch: Arch) -> Vec<String> {
        let mut args = vec!["build".to_string(), "--release".to_string()];
        if arch != Arch::X86_64 {
            args.extend(["--target".to_string(), arch.target().to_string()]);
        }
        if self == KernelBuild::Lean {
            args.push("--no-default-features".into());
            args.push("--target-dir".into());
            args.push(lean_target_dir().display().to_string());
        }
        args
    }
}

/// The lean kernel's cargo target directory.
fn lean_target_dir() -> PathBuf {
    paths::kernel_dir().join("target/lean")
}

/// The cargo that runs us (`$CARGO`, set by `cargo run`), so nested builds use the
/// same toolchain.
pub fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds the checked kernel for `arch` with `cargo build --release` in `qmk/` and
/// returns the ELF path. Cargo's own output (progress, compiler errors) goes straight
/// to the terminal.
pub fn build_kernel(arch: Arch, verbose: bool) -> Result<PathBuf, String> {
    build_kernel_as(KernelBuild::Checked, arch, verbose)?
        .ok_or_else(|| "no checked kernel (cannot happen: it is built when not given)".into())
}

/// Builds `build` for `arch` (or takes the prebuilt ELF its override variable names,
/// whatever the architecture) and returns the ELF path; `Ok(None)` for a lean kernel
/// when only [`KERNEL_OVERRIDE_VAR`] names a prebuilt kernel. Installs the Rust target
/// first when it is missing.
pub fn build_kernel_as(
    build: KernelBuild,
    arch: Arch,
    verbose: bool,
) -> Result<Option<PathBuf>, String> {
    let override_var = match build {
        KernelBuild::Checked => KERNEL_OVERRIDE_VAR,
        KernelBuild::Lean => LEAN_KERNEL_OVERRIDE_VAR,
    };
    if let Some(elf) = env::var_os(override_var).filter(|p| !p.is_empty()) {
        let elf = PathBuf::from(elf);
        if !elf.is_file() {
            return Err(format!("{override_var}={}: no such file", elf.display()));
        }
        eprintln!(
            "xtask: using prebuilt {} kernel {} (from {override_var})",
            build.word(),
            elf.display()
        );
        return Ok(Some(elf));
    }
    if build == KernelBuild::Lean && env::var_os(KERNEL_OVERRIDE_VAR).is_some_and(|p| !p.is_empty())
    {
        return Ok(None);
    }
    let kernel_dir = paths::kernel_dir();
    if !kernel_dir.join("Cargo.toml").is_file() {
        return Err(format!(
            "no kernel crate at {}/Cargo.toml",
            paths::shown(&kernel_dir)
        ));
    }
    arch.ensure_rust_target()?;
    let args = build.cargo_args(arch);
    let mut command = cargo();
    command
        .args(&args)
        .current_dir(&kernel_dir)
        // qmk/.cargo/config.toml carries the freestanding rustflags; RUSTFLAGS from the
        // environment would replace them, and a CARGO_TARGET_DIR would move the ELF
        // away from where the protocol says it is.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    if verbose {
        eprintln!("xtask: $ (cd qmk && cargo {})", args.join(" "));
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build the kernel: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the {} {} kernel failed ({status})",
            build.word(),
            arch.word()
        ));
    }
    let elf = build.elf(arch);
    if !elf.is_file() {
        return Err(format!(
            "the kernel built but {} is missing (see docs/kernel-protocol.md)",
            paths::shown(&elf)
        ));
    }
    Ok(Some(elf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_have_their_own_words_arguments_and_elves() {
        for build in [KernelBuild::Checked, KernelBuild::Lean] {
            assert_eq!(KernelBuild::from_word(build.word()), Some(build));
        }
        assert_eq!(KernelBuild::from_word("custom"), None);
        let x86_64 = Arch::X86_64;
        assert_eq!(
            KernelBuild::Checked.cargo_args(x86_64),
            ["build", "--release"]
        );
        let lean = KernelBuild::Lean.cargo_args(x86_64);
        assert_eq!(lean[..3], ["build", "--release", "--no-default-features"]);
        assert_eq!(lean[3], "--target-dir");
        assert!(lean[4].ends_with("qmk/target/lean"), "{}", lean[4]);
        assert!(KernelBuild::Checked
            .elf(x86_64)
            .ends_with("qmk/target/x86_64-unknown-linux-gnu/release/qmk"));
        assert!(KernelBuild::Lean
            .elf(x86_64)
            .ends_with("qmk/target/lean/x86_64-unknown-linux-gnu/release/qmk"));
        let aarch64 = Arch::Aarch64;
        assert_eq!(
            KernelBuild::Checked.cargo_args(aarch64),
            ["build", "--release", "--target", "aarch64-unknown-none"]
        );
        assert_eq!(
            KernelBuild::Lean.cargo_args(aarch64)[4..6],
            ["--no-default-features", "--target-dir"]
        );
        assert!(KernelBuild::Checked
            .elf(aarch64)
            .ends_with("qmk/target/aarch64-unknown-none/release/qmk"));
        assert!(KernelBuild::Lean
            .elf(aarch64)
            .ends_with("qmk/target/lean/aarch64-unknown-none/release/qmk"));
    }
}
