//! The host half of `cargo xtask test`: unit and integration tests, formatting, lints.

use crate::kernel_build::cargo;
use crate::paths;

/// The host checks, in the order they run: tests first (their failures matter most),
/// then style.
pub const HOST_CHECKS: [&[&str]; 3] = [
    &["test", "--workspace"],
    &["fmt", "--all", "--", "--check"],
    &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
];

/// Runs every check at the repository root, even after one fails, so one run shows
/// everything to fix. Returns the commands that failed, e.g. `cargo fmt --all -- --check`.
pub fn run_host_checks() -> Vec<String> {
    let mut failed = Vec::new();
    for args in HOST_CHECKS {
        let shown = format!("cargo {}", args.join(" "));
        eprintln!("xtask: running `{shown}`");
        let status = cargo().args(args).current_dir(paths::repo_root()).status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("xtask: `{shown}` failed ({status})");
                failed.push(shown);
            }
            Err(e) => {
                eprintln!("xtask: cannot run `{shown}`: {e}");
                failed.push(shown);
            }
        }
    }
    failed
}
