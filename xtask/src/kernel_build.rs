//! Builds the `qmk` kernel (or takes a prebuilt one from `$QMK_KERNEL`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

use crate::paths;

/// Environment variable naming a kernel ELF to boot instead of building `qmk/`
/// (used by the fake-QEMU tests, and handy to boot an older build).
pub const KERNEL_OVERRIDE_VAR: &str = "QMK_KERNEL";

/// The cargo that runs us (`$CARGO`, set by `cargo run`), so nested builds use the
/// same toolchain.
pub fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds the kernel with `cargo build --release` in `qmk/` and returns the ELF path.
/// Cargo's own output (progress, compiler errors) goes straight to the terminal.
pub fn build_kernel(verbose: bool) -> Result<PathBuf, String> {
    if let Some(elf) = env::var_os(KERNEL_OVERRIDE_VAR).filter(|p| !p.is_empty()) {
        let elf = PathBuf::from(elf);
        if !elf.is_file() {
            return Err(format!(
                "{KERNEL_OVERRIDE_VAR}={}: no such file",
                elf.display()
            ));
        }
        eprintln!(
            "xtask: using prebuilt kernel {} (from {KERNEL_OVERRIDE_VAR})",
            elf.display()
        );
        return Ok(elf);
    }
    let kernel_dir = paths::kernel_dir();
    if !kernel_dir.join("Cargo.toml").is_file() {
        return Err(format!(
            "no kernel crate at {}/Cargo.toml",
            paths::shown(&kernel_dir)
        ));
    }
    let mut build = cargo();
    build
        .args(["build", "--release"])
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
        eprintln!("xtask: $ (cd qmk && cargo build --release)");
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo to build the kernel: {e}"))?;
    if !status.success() {
        return Err(format!("building the kernel failed ({status})"));
    }
    let elf = paths::kernel_elf();
    if !elf.is_file() {
        return Err(format!(
            "the kernel built but {} is missing (see docs/kernel-protocol.md)",
            paths::shown(&elf)
        ));
    }
    Ok(elf)
}
