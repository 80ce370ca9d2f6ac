//! The static check of `cargo xtask test`: reads the built kernel's machine code and
//! checks quickmap's promises that no test can observe directly (DESIGN.md §3.4):
//! `pmap_quick_enter_page` and `pmap_quick_remove_page`, with everything they call
//! (cold panic paths aside), contain no locked instruction, and the two together at
//! most one `invlpg`.
//!
//! Static, so it is a bound over every path, not a sample of the paths a test took.

pub mod disassembly;
pub mod reach;

use std::collections::BTreeSet;
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::qemu_setup::{apt_install, find_in_path, is_executable, running_as_root};
use disassembly::{parse_disassembly, Function};
use reach::FunctionMap;

/// The exported entry points checked (`#[no_mangle]` in the kernel).
pub const ROOTS: [&str; 2] = ["pmap_quick_enter_page", "pmap_quick_remove_page"];
/// At most this many `invlpg` in the two roots' code together: one local
/// invalidation per enter/remove pair.
pub const MAX_INVLPG: usize = 1;
/// Environment variable naming an objdump to use instead of the one on `PATH`.
pub const OBJDUMP_OVERRIDE_VAR: &str = "QMK_OBJDUMP";
/// The Debian package that provides objdump.
const BINUTILS_PACKAGE: &str = "binutils";

/// What the check found: report lines to print, and the problems (empty: passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// One line per root, then a line about `invlpg`.
    pub report: Vec<String>,
    /// Each broken promise, one line each.
    pub problems: Vec<String>,
}

/// Disassembles `elf` and checks it. `Err` means the check could not run (no objdump,
/// objdump failed); a failed check is an `Ok` outcome with problems.
pub fn run_static_check(elf: &Path) -> Result<CheckOutcome, String> {
    let objdump = locate_or_install_objdump()?;
    let output = Command::new(&objdump)
        .args(["-d", "-C", "--no-show-raw-insn", "-M", "intel"])
        .arg(elf)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", objdump.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "`objdump -d {}` failed ({}): {}",
            elf.display(),
            output.status,
            stderr.lines().next().unwrap_or("")
        ));
    }
    Ok(check_disassembly(&String::from_utf8_lossy(&output.stdout)))
}

/// The check itself, on objdump's text.
pub fn check_disassembly(text: &str) -> CheckOutcome {
    let functions = parse_disassembly(text);
    let map = FunctionMap::new(&functions);
    let mut report = Vec::new();
    let mut problems = Vec::new();
    // Functions reached from either root, each counted once for `invlpg`.
    let mut reached_by_any: BTreeSet<usize> = BTreeSet::new();
    for root in ROOTS {
        let Some(index) = map.find(root) else {
            problems.push(format!(
                "symbol `{root}` not found in the kernel (it must be exported with \
                 #[no_mangle] and linked in)"
            ));
            continue;
        };
        let reach = map.reach(index);
        reached_by_any.extend(&reach.functions);
        report.push(describe_reach(root, &functions, &reach));
        for &i in &reach.functions {
            for instruction in functions[i].instructions.iter().filter(|x| x.is_locked()) {
                problems.push(format!(
                    "{root}: locked instruction in {} at {:#x}: {} {}",
                    functions[i].name,
                    instruction.address,
                    [instruction.prefixes.join(" "), instruction.mnemonic.clone()]
                        .join(" ")
                        .trim(),
                    instruction.operands
                ));
            }
        }
    }
    let invlpg: Vec<String> = reached_by_any
        .iter()
        .map(|&i| &functions[i])
        .flat_map(|function| {
            function
                .instructions
                .iter()
                .filter(|x| x.mnemonic == "invlpg")
                .map(move |x| format!("{} at {:#x}", function.name, x.address))
        })
        .collect();
    report.push(format!(
        "invlpg in the two together: {} (at most {MAX_INVLPG}){}",
        invlpg.len(),
        if invlpg.is_empty() {
            String::new()
        } else {
            format!(": {}", invlpg.join(", "))
        }
    ));
    if invlpg.len() > MAX_INVLPG {
        problems.push(format!(
            "{} invlpg instructions in enter+remove (at most {MAX_INVLPG}): {}",
            invlpg.len(),
            invlpg.join(", ")
        ));
    }
    CheckOutcome { report, problems }
}

/// `ROOT: N instructions in K function(s) (f 12, g 3); L locked; cold paths not
/// followed: ...; indirect branches: M`.
fn describe_reach(root: &str, functions: &[Function], reach: &reach::Reach) -> String {
    let total: usize = reach
        .functions
        .iter()
        .map(|&i| functions[i].instructions.len())
        .sum();
    let each: Vec<String> = reach
        .functions
        .iter()
        .map(|&i| format!("{} {}", functions[i].name, functions[i].instructions.len()))
        .collect();
    let locked: usize = reach
        .functions
        .iter()
        .map(|&i| {
            functions[i]
                .instructions
                .iter()
                .filter(|x| x.is_locked())
                .count()
        })
        .sum();
    let mut line = format!(
        "{root}: {total} instructions in {} function(s) ({}); {locked} locked",
        reach.functions.len(),
        each.join(", ")
    );
    if !reach.cold_skipped.is_empty() {
        let cold: Vec<&str> = reach.cold_skipped.iter().map(String::as_str).collect();
        line.push_str(&format!("; cold paths not followed: {}", cold.join(", ")));
    }
    if reach.indirect_branches > 0 {
        // Not followable statically; said so rather than silently trusted.
        line.push_str(&format!(
            "; {} indirect branch(es) not followed",
            reach.indirect_branches
        ));
    }
    line
}

/// `$QMK_OBJDUMP`, else `objdump` from `PATH`, else installs binutils when root, else
/// fails with the command to run.
fn locate_or_install_objdump() -> Result<PathBuf, String> {
    if let Some(path) = env::var_os(OBJDUMP_OVERRIDE_VAR).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "{OBJDUMP_OVERRIDE_VAR}={}: not an executable file",
                path.display()
            ))
        };
    }
    if let Some(path) = find_in_path("objdump") {
        return Ok(path);
    }
    if !running_as_root() {
        return Err(format!(
            "objdump not found; install it with: sudo apt-get update && sudo \
             DEBIAN_FRONTEND=noninteractive apt-get install -y {BINUTILS_PACKAGE}"
        ));
    }
    eprintln!("xtask: objdump not found; installing Debian package {BINUTILS_PACKAGE}");
    apt_install(BINUTILS_PACKAGE)?;
    find_in_path("objdump")
        .ok_or_else(|| format!("objdump still not on PATH after installing {BINUTILS_PACKAGE}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use disassembly::tests::SAMPLE;

    #[test]
    fn sample_kernel_passes() {
        let outcome = check_disassembly(SAMPLE);
        assert_eq!(outcome.problems, Vec::<String>::new());
        assert_eq!(
            outcome.report,
            [
                "pmap_quick_enter_page: 15 instructions in 3 function(s) \
                 (pmap_quick_enter_page 4, quickmap::quick_map::QuickMap<P,M>::enter 9, \
                 qmk::arch::critical_enter 2); 0 locked; cold paths not followed: \
                 quickmap::rules::nesting_beyond_capacity; 1 indirect branch(es) not followed",
                "pmap_quick_remove_page: 5 instructions in 2 function(s) \
                 (pmap_quick_remove_page 3, <qmk::Mmu as quickmap::mmu::Mmu>::clear 2); 0 locked",
                "invlpg in the two together: 1 (at most 1): \
                 quickmap::quick_map::QuickMap<P,M>::enter at 0x100057",
            ]
        );
    }

    #[test]
    fn two_invlpg_and_a_lock_fail() {
        let two = SAMPLE.replace(
            "  1000c0:\tmov    QWORD PTR [rdi+0x8],0x0",
            "  1000c0:\tinvlpg BYTE PTR [rdi]",
        );
        assert_eq!(
            check_disassembly(&two).problems,
            ["2 invlpg instructions in enter+remove (at most 1): \
              quickmap::quick_map::QuickMap<P,M>::enter at 0x100057, \
              <qmk::Mmu as quickmap::mmu::Mmu>::clear at 0x1000c0"]
        );
        let locked = SAMPLE.replace(
            "  100080:\tadd    DWORD PTR gs:0x10,0x1",
            "  100080:\tlock add DWORD PTR [rip+0x10],0x1",
        );
        let outcome = check_disassembly(&locked);
        assert_eq!(
            outcome.problems,
            [
                "pmap_quick_enter_page: locked instruction in qmk::arch::critical_enter at \
              0x100080: lock add DWORD PTR [rip+0x10],0x1"
            ]
        );
    }

    #[test]
    fn missing_symbols_fail_clearly() {
        let outcome = check_disassembly("0000000000000010 <kernel_main>:\n  10:\tret\n");
        assert_eq!(outcome.problems.len(), 2);
        assert!(outcome.problems[0].starts_with("symbol `pmap_quick_enter_page` not found"));
        assert_eq!(
            outcome.report,
            ["invlpg in the two together: 0 (at most 1)"]
        );
    }
}
