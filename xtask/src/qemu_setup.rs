//! Finds the QEMU binary of an architecture, installing Debian's package when we are
//! allowed to.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::arch::Arch;

/// Environment variable naming a QEMU binary to use instead (tests use a fake one).
pub const QEMU_OVERRIDE_VAR: &str = "QMK_QEMU";

/// What to do when QEMU is not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingQemu {
    /// We are root: install it with apt-get, non-interactively.
    Install,
    /// We are not: tell the user the command, in one line.
    AskUser(String),
}

/// Decides how to get `arch`'s QEMU; pure so that both paths are tested without being
/// root.
pub fn missing_qemu_action(arch: Arch, is_root: bool) -> MissingQemu {
    match arch.missing_qemu_hint(is_root) {
        None => MissingQemu::Install,
        Some(hint) => MissingQemu::AskUser(format!(
            "{hint} (or point {QEMU_OVERRIDE_VAR} at a QEMU binary)"
        )),
    }
}

/// Returns the QEMU to run for `arch`: `$QMK_QEMU` if set, else
/// `qemu-system-x86_64` or `qemu-system-aarch64` from `PATH`, installing its Debian
/// package first if missing and we run as root. The error is one line.
pub fn locate_or_install_qemu(arch: Arch) -> Result<PathBuf, String> {
    if let Some(path) = env::var_os(QEMU_OVERRIDE_VAR).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "{QEMU_OVERRIDE_VAR}={}: not an executable file",
                path.display()
            ))
        };
    }
    let (program, package) = (arch.qemu_program(), arch.qemu_package());
    if let Some(path) = find_in_path(program) {
        return Ok(path);
    }
    match missing_qemu_action(arch, running_as_root()) {
        MissingQemu::AskUser(message) => Err(message),
        MissingQemu::Install => {
            eprintln!("xtask: {program} not found; installing Debian package {package}");
            apt_install(package)?;
            find_in_path(program)
                .ok_or_else(|| format!("{program} still not on PATH after installing {package}"))
        }
    }
}

/// `apt-get update && apt-get install -y PACKAGE`, visibly and without ever waiting
/// for input (works under CI=true with no stdin). Used for QEMU and for binutils.
pub fn apt_install(package: &str) -> Result<(), String> {
    let steps: [&[&str]; 2] = [
        &["update"],
        &["install", "-y", "--no-install-recommends", package],
    ];
    for args in steps {
        eprintln!("xtask: running `apt-get {}`", args.join(" "));
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run apt-get to install {package}: {e}"))?;
        if !status.success() {
            return Err(format!(
                "`apt-get {}` failed ({status}); install {package} by hand",
                args.join(" ")
            ));
        }
    }
    Ok(())
}

/// `program` in a directory of `PATH`, if it is an executable file there.
pub fn find_in_path(program: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program.as_ref()))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Reads the effective user id from `/proc/self/status` (a host tool without `libc`
/// or unsafe code); assumes "not root" if it cannot tell, which only means we print
/// the install command instead of running it.
pub fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid(&status))
        == Some(0)
}

/// The effective uid from the `Uid:` line (real, effective, saved, filesystem).
fn effective_uid(proc_status: &str) -> Option<u32> {
    let line = proc_status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_installs_others_are_told_the_command() {
        for (arch, package) in [
            (Arch::X86_64, "qemu-system-x86"),
            (Arch::Aarch64, "qemu-system-arm"),
        ] {
            assert_eq!(missing_qemu_action(arch, true), MissingQemu::Install);
            let MissingQemu::AskUser(message) = missing_qemu_action(arch, false) else {
                panic!("non-root must not install");
            };
            assert!(
                message.contains(&format!("apt-get install -y {package} ")),
                "{message}"
            );
            assert!(!message.contains('\n'));
        }
    }

    #[test]
    fn uid_parsing() {
        let status = "Name:\txtask\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t5\t6\t7\t8"), Some(6));
        assert_eq!(effective_uid("Name: x"), None);
    }

    #[test]
    fn path_lookup() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-program-xtask").is_none());
    }
}
