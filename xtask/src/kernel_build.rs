//! Builds the `qmk` kernel (or takes a prebuilt one from `$QMK_KERNEL`), in one of
//! two builds: the checked kernel every command boots, and the lean kernel the
//! benchmark also measures.

use std::env;
use std::path::PathBuf;
use std::process::Command;

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

    /// The ELF `cargo build` leaves.
    pub fn elf(self) -> PathBuf {
        if crate::arch_aarch64::selected() {
            // TEMPORARY (issue 13): the lean build is not separate on aarch64 yet.
            return crate::arch_aarch64::kernel_elf();
        }
        match self {
            KernelBuild::Checked => paths::kernel_elf(),
            KernelBuild::Lean => lean_target_dir().join("x86_64-unknown-linux-gnu/release/qmk"),
        }
    }

    /// `cargo` arguments, run in `qmk/`.
    fn cargo_args(self) -> Vec<String> {
        let mut args = vec!["build".to_string(), "--release".to_string()];
        if crate::arch_aarch64::selected() {
            // TEMPORARY (issue 13): see `arch_aarch64`.
            args.extend([
                "--target".to_string(),
                crate::arch_aarch64::TARGET.to_string(),
            ]);
            return args;
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

/// Builds the checked kernel with `cargo build --release` in `qmk/` and returns the
/// ELF path. Cargo's own output (progress, compiler errors) goes straight to the
/// terminal.
pub fn build_kernel(verbose: bool) -> Result<PathBuf, String> {
    build_kernel_as(KernelBuild::Checked, verbose)?
        .ok_or_else(|| "no checked kernel (cannot happen: it is built when not given)".into())
}

/// Builds `build` (or takes the prebuilt ELF its override variable names) and returns
/// the ELF path; `Ok(None)` for a lean kernel when only [`KERNEL_OVERRIDE_VAR`] names a
/// prebuilt kernel.
pub fn build_kernel_as(build: KernelBuild, verbose: bool) -> Result<Option<PathBuf>, String> {
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
    let args = build.cargo_args();
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
            "building the {} kernel failed ({status})",
            build.word()
        ));
    }
    let elf = build.elf();
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
        assert_eq!(KernelBuild::Checked.cargo_args(), ["build", "--release"]);
        let lean = KernelBuild::Lean.cargo_args();
        assert_eq!(lean[..3], ["build", "--release", "--no-default-features"]);
        assert_eq!(lean[3], "--target-dir");
        assert!(lean[4].ends_with("qmk/target/lean"), "{}", lean[4]);
        assert_eq!(KernelBuild::Checked.elf(), paths::kernel_elf());
        assert!(KernelBuild::Lean
            .elf()
            .ends_with("qmk/target/lean/x86_64-unknown-linux-gnu/release/qmk"));
    }
}
