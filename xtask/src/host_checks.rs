//! The host half of `cargo xtask test`: unit and integration tests, formatting, lints,
//! with and without quickmap's contract checks.
//!
//! quickmap's default feature `contract-checks` adds the panics that name broken rules
//! of the unsafe remove contract; a kernel that has proven its callers turns it off. So
//! quickmap's tests and clippy run both with it (the workspace defaults) and without it
//! (`--no-default-features --features sim,stats`: only the simulated machine and the
//! counters the tests need), and the bare library (no `sim`, `stats` or checks) must
//! build without a warning.

use crate::kernel_build::cargo;
use crate::paths;

/// The host checks, in the order they run: tests first (their failures matter most),
/// then the bare library's build, then style.
pub const HOST_CHECKS: [&[&str]; 6] = [
    &["test", "--workspace"],
    &[
        "test",
        "-p",
        "quickmap",
        "--no-default-features",
        "--features",
        "sim,stats",
    ],
    // `cargo rustc` gives `-D warnings` to quickmap's own compilation only (RUSTFLAGS
    // would reach every crate and throw away the other builds' caches). A build that
    // warns fails, so it is never cached as a success whose warnings go unseen.
    &[
        "rustc",
        "-p",
        "quickmap",
        "--lib",
        "--no-default-features",
        "--",
        "-D",
        "warnings",
    ],
    &["fmt", "--all", "--", "--check"],
    &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
    &[
        "clippy",
        "-p",
        "quickmap",
        "--all-targets",
        "--no-default-features",
        "--features",
        "sim,stats",
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
        let shown = shown(args);
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

/// A check as the user would type it: `cargo test --workspace`.
fn shown(args: &[&str]) -> String {
    format!("cargo {}", args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown_checks() -> Vec<String> {
        HOST_CHECKS.iter().map(|args| shown(args)).collect()
    }

    #[test]
    fn the_checks_in_order() {
        assert_eq!(
            shown_checks(),
            [
                "cargo test --workspace",
                "cargo test -p quickmap --no-default-features --features sim,stats",
                "cargo rustc -p quickmap --lib --no-default-features -- -D warnings",
                "cargo fmt --all -- --check",
                "cargo clippy --workspace --all-targets -- -D warnings",
                "cargo clippy -p quickmap --all-targets --no-default-features --features \
                 sim,stats -- -D warnings",
            ]
        );
    }

    #[test]
    fn tests_and_lints_run_with_and_without_contract_checks() {
        let checks = shown_checks();
        for command in ["test", "clippy"] {
            let with_defaults: Vec<&String> = checks
                .iter()
                .filter(|c| c.starts_with(&format!("cargo {command} --workspace")))
                .collect();
            let without: Vec<&String> = checks
                .iter()
                .filter(|c| c.starts_with(&format!("cargo {command} -p quickmap")))
                .filter(|c| c.contains("--no-default-features --features sim,stats"))
                .collect();
            assert_eq!(
                (with_defaults.len(), without.len()),
                (1, 1),
                "`cargo {command}` with and without default features: {checks:?}"
            );
            // The workspace run keeps the default features, `contract-checks` among them.
            assert!(!with_defaults[0].contains("--no-default-features"));
            assert!(!with_defaults[0].contains("--features"));
        }
    }

    #[test]
    fn the_bare_library_and_every_lint_run_deny_warnings() {
        let bare: Vec<&&[&str]> = HOST_CHECKS
            .iter()
            .filter(|args| args.contains(&"--no-default-features") && !args.contains(&"--features"))
            .collect();
        assert_eq!(bare.len(), 1, "one build of the bare library");
        for args in bare
            .into_iter()
            .chain(HOST_CHECKS.iter().filter(|args| args[0] == "clippy"))
        {
            assert!(
                args.ends_with(&["--", "-D", "warnings"]),
                "{} must fail on a warning",
                shown(args)
            );
        }
    }

    #[test]
    fn tests_run_before_builds_and_style() {
        let first_other = HOST_CHECKS
            .iter()
            .position(|args| args[0] != "test")
            .unwrap();
        assert!(HOST_CHECKS[first_other..]
            .iter()
            .all(|args| args[0] != "test"));
    }
}
