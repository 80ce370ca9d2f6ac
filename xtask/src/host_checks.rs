//! The host half of `cargo xtask test`: unit and integration tests, the packaged crate's
//! own tests, builds for bare-metal targets, documentation, formatting, lints.
//!
//! quickmap's default feature `contract-checks` adds the panics that name broken rules
//! of the unsafe remove contract; a kernel that has proven its callers turns it off. So
//! quickmap's tests and clippy run both with it (`--all-features`) and without it
//! (`--no-default-features --features sim,stats`: only the simulated machine and the
//! counters the integration tests need; `Cargo.toml` declares them as the tests'
//! `required-features`). A plain `cargo test --workspace` runs xtask's tests and
//! quickmap's unit tests and feature-free doctests with the default features.
//!
//! The crate must also test itself as crates.io would ship it: `cargo package` and a
//! `cargo test --all-features` in the unpacked `.crate` catch a test, doctest or file
//! that only works inside this repository. And the library must build without a
//! warning where kernels use it (`x86_64-unknown-none`, `aarch64-unknown-none`) and
//! document without a broken link with and without its optional features.
//!
//! A client crate outside the workspace, `examples/bounce-client`, uses quickmap through
//! its public API only; its tests and clippy run with a target directory of their own
//! (`target/bounce-client`), so a change that breaks a user of the crate fails here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel_build::cargo;
use crate::paths;

/// One host check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostCheck {
    /// `cargo ARGS` at the repository root.
    Cargo(&'static [&'static str]),
    /// `cargo package -p quickmap --allow-dirty --no-verify`, the `.crate` unpacked
    /// afresh under `target/package/`, and `cargo test --all-features` in that copy.
    PackagedTests,
    /// quickmap's library built for a bare-metal target with warnings denied; the
    /// target is installed with `rustup target add` first when it is missing.
    BareMetal(&'static str),
}

/// The host checks, in the order they run: tests first (their failures matter most),
/// then the builds, then the documentation and style.
pub const HOST_CHECKS: [HostCheck; 14] = [
    HostCheck::Cargo(&["test", "--workspace"]),
    HostCheck::Cargo(&["test", "-p", "quickmap", "--all-features"]),
    HostCheck::Cargo(&[
        "test",
        "-p",
        "quickmap",
        "--no-default-features",
        "--features",
        "sim,stats",
    ]),
    HostCheck::PackagedTests,
    HostCheck::Cargo(&[
        "test",
        "--manifest-path",
        CLIENT_MANIFEST,
        "--target-dir",
        CLIENT_TARGET_DIR,
    ]),
    // `cargo rustc` gives `-D warnings` to quickmap's own compilation only (RUSTFLAGS
    // would reach every crate and throw away the other builds' caches). A build that
    // warns fails, so it is never cached as a success whose warnings go unseen.
    HostCheck::Cargo(&[
        "rustc",
        "-p",
        "quickmap",
        "--lib",
        "--no-default-features",
        "--",
        "-D",
        "warnings",
    ]),
    HostCheck::BareMetal("x86_64-unknown-none"),
    HostCheck::BareMetal("aarch64-unknown-none"),
    // Likewise `cargo rustdoc` rather than RUSTDOCFLAGS: documents quickmap alone (as
    // `cargo doc -p quickmap --no-deps`) and fails on a warning, e.g. a broken link to
    // an item that only exists with some feature.
    HostCheck::Cargo(&["rustdoc", "-p", "quickmap", "--lib", "--", "-D", "warnings"]),
    HostCheck::Cargo(&[
        "rustdoc",
        "-p",
        "quickmap",
        "--lib",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]),
    HostCheck::Cargo(&["fmt", "--all", "--", "--check"]),
    HostCheck::Cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]),
    HostCheck::Cargo(&[
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
    ]),
    HostCheck::Cargo(&[
        "clippy",
        "--manifest-path",
        CLIENT_MANIFEST,
        "--target-dir",
        CLIENT_TARGET_DIR,
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]),
];

/// The client crate outside the workspace (a `[workspace]` of its own), from the root.
const CLIENT_MANIFEST: &str = "examples/bounce-client/Cargo.toml";

/// Its target directory, as `target/package-test` is the packaged crate's: the client
/// resolves its dependencies with its own lock file and features, so its builds are
/// kept, and cached, apart from the workspace's.
const CLIENT_TARGET_DIR: &str = "target/bounce-client";

/// The `cargo test` run in the unpacked package.
const PACKAGED_TEST_ARGS: [&str; 2] = ["test", "--all-features"];

impl HostCheck {
    /// The check as the user would type it at the repository root, e.g. `cargo test
    /// --workspace`; for [`HostCheck::PackagedTests`], what it does in words.
    pub fn shown(self) -> String {
        match self {
            HostCheck::Cargo(args) => shown(args),
            HostCheck::PackagedTests => format!(
                "the packaged crate's tests ({} in the unpacked .crate)",
                shown(&PACKAGED_TEST_ARGS)
            ),
            HostCheck::BareMetal(target) => shown(&bare_metal_args(target)),
        }
    }

    /// Runs the check, announcing each command; the error is one line.
    fn run(self) -> Result<(), String> {
        let root = paths::repo_root();
        match self {
            HostCheck::Cargo(args) => run_step(cargo().args(args).current_dir(root), &shown(args)),
            HostCheck::PackagedTests => {
                eprintln!("xtask: checking {}", self.shown());
                run_packaged_tests(root)
            }
            HostCheck::BareMetal(target) => {
                ensure_target(target)?;
                let args = bare_metal_args(target);
                run_step(cargo().args(args).current_dir(root), &shown(&args))
            }
        }
    }
}

/// `cargo rustc` for quickmap's library on `target`, default features, warnings denied.
fn bare_metal_args(target: &str) -> [&str; 9] {
    [
        "rustc", "-p", "quickmap", "--lib", "--target", target, "--", "-D", "warnings",
    ]
}

/// Runs every check at the repository root, even after one fails, so one run shows
/// everything to fix. Returns the checks that failed, e.g. `cargo fmt --all -- --check`.
pub fn run_host_checks() -> Vec<String> {
    let mut failed = Vec::new();
    for check in HOST_CHECKS {
        if let Err(reason) = check.run() {
            let shown = check.shown();
            eprintln!("xtask: host check failed: {reason}");
            failed.push(shown);
        }
    }
    failed
}

/// Announces and runs one command (`shown` as the user would type it), its output
/// straight to the terminal. The error names the command: `` `cargo ...`: exit status: 1 ``.
fn run_step(command: &mut Command, shown: &str) -> Result<(), String> {
    eprintln!("xtask: running `{shown}`");
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("`{shown}`: {status}")),
        Err(e) => Err(format!("`{shown}`: cannot run it: {e}")),
    }
}

/// Packages quickmap as `cargo publish` would, unpacks the `.crate` afresh and runs its
/// tests there, with a target directory of their own (`target/package-test`) so that
/// the dependencies (proptest, ...) are built once, not on every run.
fn run_packaged_tests(root: &Path) -> Result<(), String> {
    let target = root.join("target");
    // The `.crate` goes to `target/package/` whatever `CARGO_TARGET_DIR` says.
    let package_args = [
        "package",
        "-p",
        "quickmap",
        "--allow-dirty",
        "--no-verify",
        "--target-dir",
        "target",
    ];
    run_step(
        cargo().args(package_args).current_dir(root),
        &shown(&package_args),
    )?;

    let manifest_path = root.join("quickmap/Cargo.toml");
    let manifest = fs::read_to_string(&manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", paths::shown(&manifest_path)))?;
    let version = package_version(&manifest).ok_or_else(|| {
        format!(
            "no `version = \"...\"` in [package] of {}",
            paths::shown(&manifest_path)
        )
    })?;
    // Cargo stops looking for a workspace at a directory that ends in `target/package`
    // (that is how `cargo package` verifies a crate), so the copy is a package of its
    // own there, not a stray member of this workspace.
    let package_dir = target.join("package");
    let crate_file = package_dir.join(format!("quickmap-{version}.crate"));
    let unpacked = package_dir.join(format!("quickmap-{version}"));
    if unpacked.exists() {
        fs::remove_dir_all(&unpacked)
            .map_err(|e| format!("cannot remove {}: {e}", paths::shown(&unpacked)))?;
    }
    // `-m`: the files get the current time rather than the archive's, so cargo always
    // rebuilds the copy instead of trusting an older build of the same paths.
    run_step(
        Command::new("tar")
            .arg("-xzmf")
            .arg(&crate_file)
            .arg("-C")
            .arg(&package_dir),
        &format!(
            "tar -xzmf {} -C {}",
            paths::shown(&crate_file),
            paths::shown(&package_dir)
        ),
    )?;

    let manifest = unpacked.join("Cargo.toml");
    let test_target = target.join("package-test");
    run_step(
        cargo()
            .args(PACKAGED_TEST_ARGS)
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&test_target)
            .current_dir(root),
        &format!(
            "{} --manifest-path {} --target-dir {}",
            shown(&PACKAGED_TEST_ARGS),
            paths::shown(&manifest),
            paths::shown(&test_target)
        ),
    )
}

/// The `version` of the `[package]` section of a manifest.
fn package_version(manifest: &str) -> Option<&str> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(value) = line
                .strip_prefix("version")
                .and_then(|rest| rest.trim_start().strip_prefix('='))
            {
                return value.trim().strip_prefix('"')?.strip_suffix('"');
            }
        }
    }
    None
}

/// Installs `target`'s standard library with rustup when the toolchain lacks it.
fn ensure_target(target: &str) -> Result<(), String> {
    if target_installed(target) {
        return Ok(());
    }
    let add = format!("rustup target add {target}");
    eprintln!("xtask: the Rust target {target} is not installed; running `{add}`");
    let added = Command::new("rustup")
        .args(["target", "add", target])
        .status()
        .is_ok_and(|status| status.success());
    if added && target_installed(target) {
        Ok(())
    } else {
        Err(format!(
            "the Rust target {target} is missing; install it with `{add}` (for the \
             toolchain that runs cargo xtask) and try again"
        ))
    }
}

/// Whether the toolchain that runs us has `target`'s `core`.
fn target_installed(target: &str) -> bool {
    let Ok(output) = rustc()
        .args(["--print", "target-libdir", "--target", target])
        .output()
    else {
        return false;
    };
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    output.status.success()
        && fs::read_dir(libdir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("libcore-"))
        })
}

/// The rustc next to the cargo that runs us (`$CARGO`), so that the target is looked
/// for in the toolchain that builds; else `rustc` from `PATH`.
fn rustc() -> Command {
    let beside_cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .and_then(|cargo| Some(cargo.parent()?.join("rustc")))
        .filter(|rustc| rustc.is_file());
    Command::new(beside_cargo.unwrap_or_else(|| "rustc".into()))
}

/// A cargo command as the user would type it: `cargo test --workspace`.
fn shown(args: &[&str]) -> String {
    format!("cargo {}", args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown_checks() -> Vec<String> {
        HOST_CHECKS.iter().map(|check| check.shown()).collect()
    }

    fn cargo_checks() -> impl Iterator<Item = &'static [&'static str]> {
        HOST_CHECKS.iter().filter_map(|check| match check {
            HostCheck::Cargo(args) => Some(*args),
            _ => None,
        })
    }

    #[test]
    fn the_checks_in_order() {
        assert_eq!(
            shown_checks(),
            [
                "cargo test --workspace",
                "cargo test -p quickmap --all-features",
                "cargo test -p quickmap --no-default-features --features sim,stats",
                "the packaged crate's tests (cargo test --all-features in the unpacked \
                 .crate)",
                "cargo test --manifest-path examples/bounce-client/Cargo.toml --target-dir \
                 target/bounce-client",
                "cargo rustc -p quickmap --lib --no-default-features -- -D warnings",
                "cargo rustc -p quickmap --lib --target x86_64-unknown-none -- -D warnings",
                "cargo rustc -p quickmap --lib --target aarch64-unknown-none -- -D warnings",
                "cargo rustdoc -p quickmap --lib -- -D warnings",
                "cargo rustdoc -p quickmap --lib --all-features -- -D warnings",
                "cargo fmt --all -- --check",
                "cargo clippy --workspace --all-targets --all-features -- -D warnings",
                "cargo clippy -p quickmap --all-targets --no-default-features --features \
                 sim,stats -- -D warnings",
                "cargo clippy --manifest-path examples/bounce-client/Cargo.toml --target-dir \
                 target/bounce-client --all-targets -- -D warnings",
            ]
        );
    }

    #[test]
    fn the_client_is_tested_and_linted_outside_the_workspace() {
        let client: Vec<&[&str]> = cargo_checks()
            .filter(|args| args.contains(&CLIENT_MANIFEST))
            .collect();
        let commands: Vec<&str> = client.iter().map(|args| args[0]).collect();
        assert_eq!(commands, ["test", "clippy"]);
        for args in client {
            assert!(
                args.windows(2)
                    .any(|pair| pair == ["--target-dir", CLIENT_TARGET_DIR]),
                "{} needs the client's own target directory",
                shown(args)
            );
        }
        // Outside the root workspace: a `[workspace]` of its own.
        let manifest = fs::read_to_string(paths::repo_root().join(CLIENT_MANIFEST)).unwrap();
        assert!(
            manifest.lines().any(|line| line.trim() == "[workspace]"),
            "{CLIENT_MANIFEST} needs a `[workspace]` table of its own"
        );
    }

    #[test]
    fn tests_and_lints_run_with_and_without_contract_checks() {
        for command in ["test", "clippy"] {
            let runs: Vec<&[&str]> = cargo_checks().filter(|args| args[0] == command).collect();
            // `--all-features` includes the default `contract-checks`.
            let with = runs.iter().filter(|args| args.contains(&"--all-features"));
            let without = runs.iter().filter(|args| {
                args.windows(3)
                    .any(|w| w == ["--no-default-features", "--features", "sim,stats"])
            });
            assert_eq!(
                (with.count(), without.count()),
                (1, 1),
                "`cargo {command}` with and without default features: {runs:?}"
            );
        }
    }

    #[test]
    fn the_workspace_tests_run_with_default_features() {
        let workspace: Vec<&[&str]> = cargo_checks()
            .filter(|args| args[0] == "test" && args.contains(&"--workspace"))
            .collect();
        assert_eq!(workspace, [&["test", "--workspace"][..]]);
    }

    #[test]
    fn every_build_lint_and_doc_denies_warnings() {
        let builds: Vec<Vec<&str>> = cargo_checks()
            .filter(|args| ["rustc", "rustdoc", "clippy"].contains(&args[0]))
            .map(<[&str]>::to_vec)
            .chain(HOST_CHECKS.iter().filter_map(|check| match check {
                HostCheck::BareMetal(target) => Some(bare_metal_args(target).to_vec()),
                _ => None,
            }))
            .collect();
        assert_eq!(builds.len(), 8, "{builds:?}");
        for args in builds {
            assert!(
                args.ends_with(&["--", "-D", "warnings"]),
                "{} must fail on a warning",
                shown(&args)
            );
        }
    }

    #[test]
    fn the_bare_library_builds_for_the_host_and_both_bare_metal_targets() {
        let bare = cargo_checks().filter(|args| {
            args.contains(&"--no-default-features") && !args.contains(&"--features")
        });
        assert_eq!(bare.count(), 1, "one build of the bare library");
        let targets: Vec<&str> = HOST_CHECKS
            .iter()
            .filter_map(|check| match check {
                HostCheck::BareMetal(target) => Some(*target),
                _ => None,
            })
            .collect();
        assert_eq!(targets, ["x86_64-unknown-none", "aarch64-unknown-none"]);
    }

    #[test]
    fn docs_are_checked_with_and_without_the_optional_features() {
        let docs: Vec<&[&str]> = cargo_checks().filter(|args| args[0] == "rustdoc").collect();
        assert_eq!(docs.len(), 2);
        assert!(!docs[0].contains(&"--all-features"));
        assert!(docs[1].contains(&"--all-features"));
    }

    /// Whether the check runs tests (they run before builds and style).
    fn runs_tests(check: HostCheck) -> bool {
        match check {
            HostCheck::Cargo(args) => args[0] == "test",
            HostCheck::PackagedTests => true,
            HostCheck::BareMetal(_) => false,
        }
    }

    #[test]
    fn tests_run_before_builds_and_style() {
        let first_other = HOST_CHECKS
            .iter()
            .position(|check| !runs_tests(*check))
            .unwrap();
        assert!(HOST_CHECKS[first_other..]
            .iter()
            .all(|check| !runs_tests(*check)));
        assert!(HOST_CHECKS[..first_other].contains(&HostCheck::PackagedTests));
    }

    #[test]
    fn package_version_reads_the_package_section() {
        let manifest = "[package]\nname = \"q\"\nversion = \"1.2.3\"\n\n[dependencies]\n\
                        version = \"9\"\n";
        assert_eq!(package_version(manifest), Some("1.2.3"));
        assert_eq!(
            package_version("[dependencies]\nversion = \"9\"\n[package]\nname = \"q\"\n"),
            None
        );
        assert_eq!(
            package_version("[package]\nversion.workspace = true\n"),
            None
        );
        assert_eq!(package_version("[package]\nversion_x = \"1\"\n"), None);
    }

    fn quickmap_file(path: &str) -> String {
        let path = paths::repo_root().join("quickmap").join(path);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn quickmap_manifest_has_a_literal_version() {
        // The packaged-tests check finds the `.crate` by it.
        assert!(package_version(&quickmap_file("Cargo.toml")).is_some());
    }

    /// The `[[test]]` targets of a manifest that have `required-features`.
    fn tests_with_required_features(manifest: &str) -> Vec<String> {
        let mut found = Vec::new();
        let (mut in_test, mut name, mut required): (bool, Option<&str>, bool) =
            (false, None, false);
        // A last `[` closes the last section.
        for line in manifest.lines().map(str::trim).chain(["["]) {
            if line.starts_with('[') {
                if let (true, Some(name), true) = (in_test, name, required) {
                    found.push(name.to_string());
                }
                (in_test, name, required) = (line == "[[test]]", None, false);
            } else if in_test {
                if let Some(value) = line.strip_prefix("name ").or(line.strip_prefix("name=")) {
                    name = Some(value.trim_start_matches([' ', '=']).trim_matches('"'));
                }
                required |= line.starts_with("required-features");
            }
        }
        found
    }

    #[test]
    fn every_quickmap_integration_test_declares_its_features() {
        // Without `required-features`, a test that uses `sim` fails to compile in a
        // plain `cargo test` and in the packaged crate's default build.
        let declared = tests_with_required_features(&quickmap_file("Cargo.toml"));
        let tests_dir = paths::repo_root().join("quickmap/tests");
        let mut files: Vec<String> = fs::read_dir(&tests_dir)
            .unwrap()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".rs").map(str::to_string)
            })
            .collect();
        files.sort();
        assert!(!files.is_empty());
        for file in files {
            assert!(
                declared.contains(&file),
                "quickmap/tests/{file}.rs needs a `[[test]] name = \"{file}\"` with \
                 `required-features` in quickmap/Cargo.toml (declared: {declared:?})"
            );
        }
    }

    #[test]
    fn required_features_parsing() {
        let manifest = "[[test]]\nname = \"a\"\nrequired-features = [\"sim\"]\n\n\
                        [[test]]\nname = \"b\"\n\n[features]\nrequired-features = 1\n\
                        [[test]]\nrequired-features = [\"sim\"]\nname = \"c\"\n";
        assert_eq!(tests_with_required_features(manifest), ["a", "c"]);
    }

    #[test]
    fn the_package_carries_the_licences_of_the_repository() {
        for licence in ["LICENSE-MIT", "LICENSE-APACHE"] {
            let original = fs::read_to_string(paths::repo_root().join(licence)).unwrap();
            assert!(
                quickmap_file(licence) == original,
                "quickmap/{licence} must be a copy of {licence}"
            );
        }
    }
}
