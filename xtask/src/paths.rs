//! Where things are: the repository, the kernel crate, the serial logs.

use std::env;
use std::path::{Path, PathBuf};

/// The repository root (the parent of `xtask/`), fixed at compile time so that the
/// tool works from any current directory.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
}

/// The kernel's own Cargo workspace.
pub fn kernel_dir() -> PathBuf {
    repo_root().join("qmk")
}

/// Directory of per-boot serial logs: `$QMK_LOG_DIR`, else `target/qmk-logs/`.
pub fn log_dir() -> PathBuf {
    match env::var_os("QMK_LOG_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join("target/qmk-logs"),
    }
}

/// `path` relative to the repository root when it is inside it: shorter to read.
pub fn shown(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A log file name for a boot label: keeps `[A-Za-z0-9._-]`, replaces the rest (e.g.
/// the `::` of test paths) with `_`.
pub fn log_file_name(label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_are_file_safe() {
        assert_eq!(
            log_file_name("test-cpus2-window::guard/page"),
            "test-cpus2-window__guard_page.log"
        );
    }

    #[test]
    fn paths_are_shown_relative_to_the_repo() {
        assert_eq!(
            shown(&repo_root().join("target/qmk-logs/run.log")),
            "target/qmk-logs/run.log"
        );
        assert_eq!(shown(Path::new("/elsewhere/x")), "/elsewhere/x");
    }
}
