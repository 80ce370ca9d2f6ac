//! The static check of `cargo xtask test`: reads the built kernel's machine code and
//! checks quickmap's promises that no test can observe directly (DESIGN.md §3.4), for
//! the kernel's strict instance, its deferred one and its local mappings ([`ROOTS`]):
//!
//! - the hot path of each exported entry point (the function with everything it
//!   reaches, cold panic paths and quickmap's named slow paths aside: see [`reach`])
//!   has exactly the `invlpg` count its design says (one in the strict remove, none
//!   anywhere else), writes no CR3 and executes no locked instruction;
//! - each slow path it reaches (a `cold_*` function of quickmap, with what that
//!   reaches) is checked on its own: the deferred remove's `cold_remove_uncached` has
//!   exactly one `invlpg`, the deferred enter's `cold_flush_free_windows` writes CR3
//!   and has no `invlpg`, the local switch-out hook's `cold_save_local_slots` has an
//!   `invlpg` (one per held slot, in its loop) and the switch-in hook's
//!   `cold_restore_local_slots` none, and no slow path has a locked instruction.
//!
//! The counts are of instructions in the code, not of executions: static, so they bound
//! every path rather than sample the paths a test took.
//!
//! On aarch64 the same promises are read in its instructions ([`Words`]): the
//! single-page invalidation is the local `tlbi vale1` (never the inner shareable
//! `tlbi vale1is`, which would broadcast to every CPU: no quickmap path may contain
//! any `tlbi ...is`), the full flush is `tlbi vmalle1`, and a lock shows as an
//! exclusive load/store pair (`ldxr`/`stxr`) or an LSE atomic (`cas`, `ldadd`, ...).

pub mod disassembly;
pub mod reach;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::qemu_setup::{apt_install, find_in_path, is_executable, running_as_root};
use disassembly::{parse_disassembly, Function, Instruction};
use reach::{FunctionMap, Reach};

/// How many of an instruction a path must contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// This many, no more, no fewer.
    Exactly(usize),
    /// This many or more.
    AtLeast(usize),
}

impl Count {
    /// Whether `n` meets it.
    pub fn admits(self, n: usize) -> bool {
        match self {
            Count::Exactly(expected) => n == expected,
            Count::AtLeast(minimum) => n >= minimum,
        }
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Count::Exactly(n) => write!(formatter, "exactly {n}"),
            Count::AtLeast(n) => write!(formatter, "at least {n}"),
        }
    }
}

/// What one path's code must contain. Locked instructions are never allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathExpectation {
    /// `invlpg`: single-page invalidations.
    pub invlpg: Count,
    /// `mov cr3,REG`: full flushes of this CPU's non-global translations.
    pub cr3_writes: Count,
}

/// A slow path a root must reach, and what it must contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowPathSpec {
    /// How its demangled name ends, e.g. `::cold_remove_uncached`: one name for every
    /// instance of the generic function, and the root's reach picks the right one.
    pub name_suffix: &'static str,
    /// What it must contain, with what it reaches.
    pub expect: PathExpectation,
}

/// An exported entry point (`#[no_mangle]` in the kernel) and what its code must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootSpec {
    /// The symbol.
    pub name: &'static str,
    /// Its hot path: the function and what it reaches, slow and panic paths aside.
    pub hot: PathExpectation,
    /// The slow paths it must reach. Others it reaches are reported and checked for
    /// locks only.
    pub slow_paths: &'static [SlowPathSpec],
}

/// A hot path that neither invalidates nor flushes.
const NO_INVALIDATION: PathExpectation = PathExpectation {
    invlpg: Count::Exactly(0),
    cr3_writes: Count::Exactly(0),
};

/// The entry points checked: the strict instance's FreeBSD pair, whose one local
/// invalidation per pair is the remove's; the deferred instance's pair, which
/// invalidates only on its slow paths (an uncached window's remove; the full flush
/// once the clean windows run out); and the local mappings' pair (one invalidation,
/// the remove's) and context-switch hooks, which cost a load and a branch for a
/// thread that holds none and invalidate only at switch-out.
pub const ROOTS: [RootSpec; 8] = [
    RootSpec {
        name: "pmap_quick_enter_page",
        hot: NO_INVALIDATION,
        slow_paths: &[],
    },
    RootSpec {
        name: "pmap_quick_remove_page",
        hot: PathExpectation {
            invlpg: Count::Exactly(1),
            cr3_writes: Count::Exactly(0),
        },
        slow_paths: &[],
    },
    RootSpec {
        name: "qmk_deferred_enter_page",
        hot: NO_INVALIDATION,
        slow_paths: &[SlowPathSpec {
            name_suffix: "::cold_flush_free_windows",
            expect: PathExpectation {
                invlpg: Count::Exactly(0),
                cr3_writes: Count::AtLeast(1),
            },
        }],
    },
    RootSpec {
        name: "qmk_deferred_remove_page",
        hot: NO_INVALIDATION,
        slow_paths: &[SlowPathSpec {
            name_suffix: "::cold_remove_uncached",
            expect: PathExpectation {
                invlpg: Count::Exactly(1),
                cr3_writes: Count::Exactly(0),
            },
        }],
    },
    RootSpec {
        name: "qmk_local_enter_page",
        hot: NO_INVALIDATION,
        slow_paths: &[],
    },
    RootSpec {
        name: "qmk_local_remove_page",
        hot: PathExpectation {
            invlpg: Count::Exactly(1),
            cr3_writes: Count::Exactly(0),
        },
        slow_paths: &[],
    },
    RootSpec {
        name: "qmk_local_switch_out",
        hot: NO_INVALIDATION,
        slow_paths: &[SlowPathSpec {
            name_suffix: "::cold_save_local_slots",
            expect: PathExpectation {
                invlpg: Count::AtLeast(1),
                cr3_writes: Count::Exactly(0),
            },
        }],
    },
    RootSpec {
        name: "qmk_local_switch_in",
        hot: NO_INVALIDATION,
        slow_paths: &[SlowPathSpec {
            name_suffix: "::cold_restore_local_slots",
            expect: NO_INVALIDATION,
        }],
    },
];
/// Environment variable naming an objdump to use instead of the one on `PATH`.
pub const OBJDUMP_OVERRIDE_VAR: &str = "QMK_OBJDUMP";
/// The Debian package that provides objdump.
const BINUTILS_PACKAGE: &str = "binutils";

/// What the check found: report lines to print, and the problems (empty: passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// One line per root's hot path, each followed by one line per slow path it
    /// reaches.
    pub report: Vec<String>,
    /// Each broken promise, one line each.
    pub problems: Vec<String>,
}

/// How the report names the instructions of an architecture.
#[derive(Debug, Clone, Copy)]
pub struct Words {
    /// The local single-page invalidation.
    pub page: &'static str,
    /// The local full flush, in counts.
    pub full: &'static str,
    /// The local full flush, in problems.
    pub full_problem: &'static str,
    /// An atomic read-modify-write.
    pub locked: &'static str,
    /// Whether the instruction set has a broadcast invalidation to count.
    pub has_broadcast: bool,
}

impl Words {
    /// The words of `arch`.
    pub fn of(arch: Arch) -> Words {
        match arch {
            Arch::X86_64 => Words {
                page: "invlpg",
                full: "CR3 write(s)",
                full_problem: "CR3 write(s) (mov cr3)",
                locked: "locked",
                has_broadcast: false,
            },
            Arch::Aarch64 => Words {
                page: "tlbi vale1",
                full: "tlbi vmalle1",
                full_problem: "tlbi vmalle1 (local full flush)",
                locked: "atomic",
                has_broadcast: true,
            },
        }
    }
}

/// Disassembles the `arch` kernel `elf` and checks it. `Err` means the check could not
/// run (no objdump, objdump failed); a failed check is an `Ok` outcome with problems.
pub fn run_static_check(elf: &Path, arch: Arch) -> Result<CheckOutcome, String> {
    let objdump = locate_or_install_objdump(arch)?;
    let arguments: &[&str] = match arch {
        Arch::X86_64 => &["-d", "-C", "--no-show-raw-insn", "-M", "intel"],
        Arch::Aarch64 => &["-d", "-C", "--no-show-raw-insn"],
    };
    let output = Command::new(&objdump)
        .args(arguments)
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
    Ok(check_disassembly(
        &String::from_utf8_lossy(&output.stdout),
        arch,
    ))
}

/// The check itself, on objdump's text of `arch` code.
pub fn check_disassembly(text: &str, arch: Arch) -> CheckOutcome {
    let functions = parse_disassembly(text, arch);
    let words = Words::of(arch);
    let map = FunctionMap::new(&functions);
    let mut outcome = CheckOutcome {
        report: Vec::new(),
        problems: Vec::new(),
    };
    for root in &ROOTS {
        match map.find(root.name) {
            Some(index) => check_root(root, index, &functions, &map, words, &mut outcome),
            None => outcome.problems.push(format!(
                "symbol `{}` not found in the kernel: it must be exported with #[no_mangle] \
                 and referenced, or the linker drops it (a #[used] static holding its \
                 address keeps it)",
                root.name
            )),
        }
    }
    outcome
}

/// Checks one root's hot path, then each slow path it reaches.
fn check_root(
    root: &RootSpec,
    index: usize,
    functions: &[Function],
    map: &FunctionMap,
    words: Words,
    outcome: &mut CheckOutcome,
) {
    let reach = map.reach(index);
    let hot = PathCode::of(functions, &reach, words);
    let mut line = format!("{}: hot path: {}", root.name, hot.describe(Some(&root.hot)));
    if !reach.slow_paths.is_empty() {
        let names: Vec<&str> = reach
            .slow_paths
            .iter()
            .map(|&i| functions[i].name.as_str())
            .collect();
        line.push_str(&format!(
            "; cold slow paths not followed: {}",
            names.join(", ")
        ));
    }
    outcome.report.push(line);
    hot.find_problems(&format!("{}: hot path", root.name), &root.hot, outcome);
    hot.find_forbidden(root.name, outcome);

    // Each slow path, and the slow paths those reach, once each.
    let mut examined: Vec<usize> = Vec::new();
    let mut pending = reach.slow_paths.clone();
    while !pending.is_empty() {
        let slow = pending.remove(0);
        if examined.contains(&slow) {
            continue;
        }
        examined.push(slow);
        let slow_reach = map.reach(slow);
        pending.extend(&slow_reach.slow_paths);
        let name = &functions[slow].name;
        let expected = root
            .slow_paths
            .iter()
            .find(|spec| name.ends_with(spec.name_suffix))
            .map(|spec| &spec.expect);
        let code = PathCode::of(functions, &slow_reach, words);
        let subject = format!("{}: cold path {name}", root.name);
        outcome
            .report
            .push(format!("{subject}: {}", code.describe(expected)));
        if let Some(expected) = expected {
            code.find_problems(&subject, expected, outcome);
        }
        code.find_forbidden(&subject, outcome);
    }
    for spec in root.slow_paths {
        if !examined
            .iter()
            .any(|&i| functions[i].name.ends_with(spec.name_suffix))
        {
            outcome.problems.push(format!(
                "{}: reaches no cold path `…{}`, which must hold {} {} and {} {}",
                root.name,
                spec.name_suffix,
                spec.expect.invlpg,
                words.page,
                spec.expect.cr3_writes,
                words.full
            ));
        }
    }
}

/// The code of one path (a root's hot path, or a slow path with what it reaches): its
/// size and where its instructions of interest are.
struct PathCode<'a> {
    functions: &'a [Function],
    reach: &'a Reach,
    words: Words,
    /// `FUNCTION at 0xADDR` of each `invlpg`.
    invlpg: Vec<String>,
    /// `FUNCTION at 0xADDR` of each CR3 write.
    cr3_writes: Vec<String>,
    /// `FUNCTION at 0xADDR: INSTRUCTION` of each locked instruction.
    locked: Vec<String>,
    /// `FUNCTION at 0xADDR: INSTRUCTION` of each broadcast invalidation (aarch64's
    /// `tlbi ...is`).
    broadcast: Vec<String>,
}

impl<'a> PathCode<'a> {
    fn of(functions: &'a [Function], reach: &'a Reach, words: Words) -> PathCode<'a> {
        let find = |wanted: fn(&Instruction) -> bool| -> Vec<(&Function, &Instruction)> {
            reach
                .functions
                .iter()
                .map(|&i| &functions[i])
                .flat_map(|f| f.instructions.iter().map(move |x| (f, x)))
                .filter(|(_, x)| wanted(x))
                .collect()
        };
        let at = |(f, x): (&Function, &Instruction)| format!("{} at {:#x}", f.name, x.address);
        let with_text = |(f, x): (&Function, &Instruction)| format!("{}: {}", at((f, x)), x.text());
        PathCode {
            functions,
            reach,
            words,
            broadcast: find(Instruction::is_broadcast_invalidation)
                .into_iter()
                .map(with_text)
                .collect(),
            invlpg: find(Instruction::is_invlpg).into_iter().map(at).collect(),
            cr3_writes: find(Instruction::is_cr3_write)
                .into_iter()
                .map(at)
                .collect(),
            locked: find(Instruction::is_locked)
                .into_iter()
                .map(with_text)
                .collect(),
        }
    }

    /// A problem for each instruction no quickmap path may hold: a locked (atomic)
    /// one, a broadcast invalidation.
    fn find_forbidden(&self, subject: &str, outcome: &mut CheckOutcome) {
        for locked in &self.locked {
            outcome.problems.push(format!(
                "{subject}: {} instruction in {locked}",
                self.words.locked
            ));
        }
        for broadcast in &self.broadcast {
            outcome.problems.push(format!(
                "{subject}: broadcast invalidation (a local one suffices for a per-CPU \
                 window) in {broadcast}"
            ));
        }
    }

    /// `N instructions in K function(s) (f 12, g 3); 1 invlpg, expected exactly 1 (g at
    /// 0x10); 0 CR3 write(s), expected exactly 0; 0 locked; cold panic paths not followed:
    /// ...; M indirect branch(es) not followed`. Without an expectation the counts are
    /// given alone.
    fn describe(&self, expected: Option<&PathExpectation>) -> String {
        let total: usize = self
            .reach
            .functions
            .iter()
            .map(|&i| self.functions[i].instructions.len())
            .sum();
        let each: Vec<String> = self
            .reach
            .functions
            .iter()
            .map(|&i| {
                let function = &self.functions[i];
                format!("{} {}", function.name, function.instructions.len())
            })
            .collect();
        let count = |what: &str, found: &[String], expected: Option<Count>| {
            let mut text = format!("{} {what}", found.len());
            if let Some(expected) = expected {
                text.push_str(&format!(", expected {expected}"));
            }
            if !found.is_empty() {
                text.push_str(&format!(" ({})", found.join(", ")));
            }
            text
        };
        let mut line = format!(
            "{total} instructions in {} function(s) ({}); {}; {}; {} {}",
            self.reach.functions.len(),
            each.join(", "),
            count(self.words.page, &self.invlpg, expected.map(|e| e.invlpg)),
            count(
                self.words.full,
                &self.cr3_writes,
                expected.map(|e| e.cr3_writes)
            ),
            self.locked.len(),
            self.words.locked
        );
        if self.words.has_broadcast {
            line.push_str(&format!(
                "; {} broadcast tlbi (...is)",
                self.broadcast.len()
            ));
        }
        if !self.reach.cold_skipped.is_empty() {
            let cold: Vec<&str> = self.reach.cold_skipped.iter().map(String::as_str).collect();
            line.push_str(&format!(
                "; cold panic paths not followed: {}",
                cold.join(", ")
            ));
        }
        if self.reach.indirect_branches > 0 {
            // Not followable statically; said so rather than silently trusted.
            line.push_str(&format!(
                "; {} indirect branch(es) not followed",
                self.reach.indirect_branches
            ));
        }
        line
    }

    /// A problem for each count that misses `expected`, said as `SUBJECT has N invlpg,
    /// expected exactly 1 (where they are)`.
    fn find_problems(&self, subject: &str, expected: &PathExpectation, outcome: &mut CheckOutcome) {
        for (what, found, count) in [
            (self.words.page, &self.invlpg, expected.invlpg),
            (
                self.words.full_problem,
                &self.cr3_writes,
                expected.cr3_writes,
            ),
        ] {
            if !count.admits(found.len()) {
                let mut problem = format!("{subject} has {} {what}, expected {count}", found.len());
                if !found.is_empty() {
                    problem.push_str(&format!(" ({})", found.join(", ")));
                }
                outcome.problems.push(problem);
            }
        }
    }
}

/// The objdump for `arch`: `$QMK_OBJDUMP`; for x86_64 [`locate_or_install_objdump_x86_64`];
/// for aarch64 `llvm-objdump` (the host's GNU objdump reads only x86) from `PATH`, else
/// the one of rustup's `llvm-tools` component, installed with `rustup component add
/// llvm-tools` when missing (any user may), else fails with the command to run.
fn locate_or_install_objdump(arch: Arch) -> Result<PathBuf, String> {
    if arch == Arch::X86_64 || env::var_os(OBJDUMP_OVERRIDE_VAR).is_some_and(|p| !p.is_empty()) {
        return locate_or_install_objdump_x86_64();
    }
    if let Some(path) = find_in_path("llvm-objdump") {
        return Ok(path);
    }
    if let Some(path) = llvm_tools_objdump().filter(|path| is_executable(path)) {
        return Ok(path);
    }
    eprintln!("xtask: llvm-objdump not found; running `rustup component add llvm-tools`");
    let installed = Command::new("rustup")
        .args(["component", "add", "llvm-tools"])
        .current_dir(crate::paths::kernel_dir())
        .status()
        .is_ok_and(|status| status.success());
    match llvm_tools_objdump().filter(|path| installed && is_executable(path)) {
        Some(path) => Ok(path),
        None => Err(
            "llvm-objdump (for the aarch64 static check) not found; install it with: rustup \
             component add llvm-tools (or apt-get install -y llvm, or point QMK_OBJDUMP at it)"
                .to_string(),
        ),
    }
}

/// Where rustup's `llvm-tools` component puts `llvm-objdump`:
/// `SYSROOT/lib/rustlib/HOST/bin/llvm-objdump`.
fn llvm_tools_objdump() -> Option<PathBuf> {
    let output = Command::new("rustc")
        .arg("-vV")
        .current_dir(crate::paths::kernel_dir())
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&output.stdout).to_string();
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))?
        .trim()
        .to_string();
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(crate::paths::kernel_dir())
        .output()
        .ok()?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Some(PathBuf::from(sysroot).join(format!("lib/rustlib/{host}/bin/llvm-objdump")))
}

/// `$QMK_OBJDUMP`, else `objdump` from `PATH`, else installs binutils when root, else
/// fails with the command to run.
fn locate_or_install_objdump_x86_64() -> Result<PathBuf, String> {
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

    const FLUSH: &str =
        "quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_flush_free_windows";
    const UNCACHED: &str =
        "quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_remove_uncached";
    const LOCAL: &str = "quickmap::local::LocalQuickMap<P,M,_>";

    /// SAMPLE with `from` (which must be in it) replaced by `to`.
    fn sample_with(from: &str, to: &str) -> String {
        assert!(SAMPLE.contains(from), "{from}");
        SAMPLE.replace(from, to)
    }

    /// Checks SAMPLE with the line `from` replaced by `to` and asserts the problems
    /// found, in order.
    #[track_caller]
    fn assert_problems<S>(from: &str, to: &str, expected: &[S])
    where
        S: std::fmt::Debug,
        String: PartialEq<S>,
    {
        assert_eq!(
            check_disassembly(&sample_with(from, to), Arch::X86_64).problems,
            expected
        );
    }

    #[test]
    fn sample_kernel_passes() {
        let outcome = check_disassembly(SAMPLE, Arch::X86_64);
        assert_eq!(outcome.problems, Vec::<String>::new());
        assert_eq!(
            outcome.report,
            [
                "pmap_quick_enter_page: hot path: 15 instructions in 3 function(s) \
                 (pmap_quick_enter_page 4, quickmap::quick_map::QuickMap<P,M>::enter 9, \
                 qmk::arch::critical_enter 2); 0 invlpg, expected exactly 0; 0 CR3 write(s), \
                 expected exactly 0; 0 locked; cold panic paths not followed: \
                 qmk::vm::quick::page_not_resident, quickmap::rules::nesting_beyond_capacity; \
                 1 indirect branch(es) not followed"
                    .to_string(),
                "pmap_quick_remove_page: hot path: 6 instructions in 2 function(s) \
                 (pmap_quick_remove_page 3, <qmk::Mmu as quickmap::mmu::Mmu>::clear 3); \
                 1 invlpg, expected exactly 1 (<qmk::Mmu as quickmap::mmu::Mmu>::clear at \
                 0x1000c8); 0 CR3 write(s), expected exactly 0; 0 locked"
                    .to_string(),
                format!(
                    "qmk_deferred_enter_page: hot path: 9 instructions in 2 function(s) \
                     (qmk_deferred_enter_page 7, qmk::arch::critical_enter 2); 0 invlpg, \
                     expected exactly 0; 0 CR3 write(s), expected exactly 0; 0 locked; cold slow \
                     paths not followed: {FLUSH}"
                ),
                format!(
                    "qmk_deferred_enter_page: cold path {FLUSH}: 7 instructions in 2 \
                     function(s) ({FLUSH} 4, <qmk::Mmu as quickmap::mmu::Mmu>::flush_all 3); \
                     0 invlpg, expected exactly 0; 1 CR3 write(s), expected at least 1 \
                     (<qmk::Mmu as quickmap::mmu::Mmu>::flush_all at 0x100243); 0 locked; \
                     cold panic paths not followed: core::panicking::panic_fmt"
                ),
                format!(
                    "qmk_deferred_remove_page: hot path: 7 instructions in 1 function(s) \
                     (qmk_deferred_remove_page 7); 0 invlpg, expected exactly 0; 0 CR3 write(s), \
                     expected exactly 0; 0 locked; cold slow paths not followed: {UNCACHED}"
                ),
                format!(
                    "qmk_deferred_remove_page: cold path {UNCACHED}: 3 instructions in 1 \
                     function(s) ({UNCACHED} 3); 1 invlpg, expected exactly 1 ({UNCACHED} at \
                     0x1002c8); 0 CR3 write(s), expected exactly 0; 0 locked"
                ),
                format!(
                    "qmk_local_enter_page: hot path: 9 instructions in 2 function(s) \
                     (qmk_local_enter_page 7, qmk::arch::critical_enter 2); 0 invlpg, expected \
                     exactly 0; 0 CR3 write(s), expected exactly 0; 0 locked; cold slow paths \
                     not followed: {LOCAL}::cold_local_slots_exhausted"
                ),
                format!(
                    "qmk_local_enter_page: cold path {LOCAL}::cold_local_slots_exhausted: 2 \
                     instructions in 1 function(s) ({LOCAL}::cold_local_slots_exhausted 2); 0 \
                     invlpg; 0 CR3 write(s); 0 locked"
                ),
                "qmk_local_remove_page: hot path: 3 instructions in 1 function(s) \
                 (qmk_local_remove_page 3); 1 invlpg, expected exactly 1 (qmk_local_remove_page \
                 at 0x100347); 0 CR3 write(s), expected exactly 0; 0 locked"
                    .to_string(),
                format!(
                    "qmk_local_switch_out: hot path: 4 instructions in 1 function(s) \
                     (qmk_local_switch_out 4); 0 invlpg, expected exactly 0; 0 CR3 write(s), \
                     expected exactly 0; 0 locked; cold slow paths not followed: \
                     {LOCAL}::cold_save_local_slots"
                ),
                format!(
                    "qmk_local_switch_out: cold path {LOCAL}::cold_save_local_slots: 4 \
                     instructions in 1 function(s) ({LOCAL}::cold_save_local_slots 4); 1 invlpg, \
                     expected at least 1 ({LOCAL}::cold_save_local_slots at 0x100388); 0 CR3 \
                     write(s), expected exactly 0; 0 locked"
                ),
                format!(
                    "qmk_local_switch_in: hot path: 4 instructions in 1 function(s) \
                     (qmk_local_switch_in 4); 0 invlpg, expected exactly 0; 0 CR3 write(s), \
                     expected exactly 0; 0 locked; cold slow paths not followed: \
                     {LOCAL}::cold_restore_local_slots"
                ),
                format!(
                    "qmk_local_switch_in: cold path {LOCAL}::cold_restore_local_slots: 2 \
                     instructions in 1 function(s) ({LOCAL}::cold_restore_local_slots 2); 0 \
                     invlpg, expected exactly 0; 0 CR3 write(s), expected exactly 0; 0 locked"
                ),
            ]
        );
    }

    #[test]
    fn local_switch_hooks_invalidate_only_at_switch_out() {
        // A switch-out that forgets to invalidate, and a switch-in that invalidates.
        assert_problems(
            "  100388:\tinvlpg BYTE PTR [rsi]",
            "  100388:\tnop",
            &[format!(
                "qmk_local_switch_out: cold path {LOCAL}::cold_save_local_slots has 0 invlpg, \
                 expected at least 1"
            )],
        );
        assert_problems(
            "  1003e0:\tmov    QWORD PTR [rcx+rdx*8],rax",
            "  1003e0:\tinvlpg BYTE PTR [rsi]",
            &[format!(
                "qmk_local_switch_in: cold path {LOCAL}::cold_restore_local_slots has 1 invlpg, \
                 expected exactly 0 ({LOCAL}::cold_restore_local_slots at 0x1003e0)"
            )],
        );
        // The slot loop inlined into the hook: a thread without local mappings would
        // pay for it at every switch.
        assert_problems(
            "  100365:\tjne    100380 <quickmap::local::LocalQuickMap<P,M,_>::cold_save_local_slots>",
            "  100365:\tinvlpg BYTE PTR [rsi]",
            &[
                "qmk_local_switch_out: hot path has 1 invlpg, expected exactly 0 \
                 (qmk_local_switch_out at 0x100365)"
                    .to_string(),
                "qmk_local_switch_out: reaches no cold path `…::cold_save_local_slots`, which \
                 must hold at least 1 invlpg and exactly 0 CR3 write(s)"
                    .to_string(),
            ],
        );
        // The local remove must invalidate its slot.
        assert_problems(
            "  100347:\tinvlpg BYTE PTR [rsi]",
            "  100347:\tnop",
            &["qmk_local_remove_page: hot path has 0 invlpg, expected exactly 1"],
        );
    }

    #[test]
    fn strict_remove_needs_exactly_one_invlpg() {
        assert_problems(
            "  1000c8:\tinvlpg BYTE PTR [rsi]",
            "  1000c8:\tmov    QWORD PTR [rsi],0x0",
            &["pmap_quick_remove_page: hot path has 0 invlpg, expected exactly 1"],
        );
        assert_problems(
            "  1000a0:\tmov    QWORD PTR [rdi],0x0",
            "  1000a0:\tinvlpg BYTE PTR [rdi]",
            &[
                "pmap_quick_remove_page: hot path has 2 invlpg, expected exactly 1 \
              (pmap_quick_remove_page at 0x1000a0, <qmk::Mmu as quickmap::mmu::Mmu>::clear \
              at 0x1000c8)",
            ],
        );
    }

    #[test]
    fn enters_must_not_invalidate() {
        assert_problems(
            "  100054:\tmov    QWORD PTR [rdi],rsi",
            "  100054:\tinvlpg BYTE PTR [rsi]",
            &[
                "pmap_quick_enter_page: hot path has 1 invlpg, expected exactly 0 \
              (quickmap::quick_map::QuickMap<P,M>::enter at 0x100054)",
            ],
        );
        // A full flush on the hot path is as wrong as an invlpg there.
        assert_problems(
            "  1001c7:\tmov    QWORD PTR [rdi+rax*8],rsi",
            "  1001c7:\tmov    cr3,rsi",
            &[
                "qmk_deferred_enter_page: hot path has 1 CR3 write(s) (mov cr3), expected exactly \
              0 (qmk_deferred_enter_page at 0x1001c7)",
            ],
        );
    }

    #[test]
    fn deferred_remove_invalidates_only_on_its_uncached_path() {
        assert_problems(
            "  100289:\tand    DWORD PTR [rsi],0xfffffffe",
            "  100289:\tinvlpg BYTE PTR [rsi]",
            &[
                "qmk_deferred_remove_page: hot path has 1 invlpg, expected exactly 0 \
              (qmk_deferred_remove_page at 0x100289)",
            ],
        );
        assert_problems(
            "  1002c8:\tinvlpg BYTE PTR [rsi]",
            "  1002c8:\tnop",
            &[format!(
                "qmk_deferred_remove_page: cold path {UNCACHED} has 0 invlpg, expected exactly 1"
            )],
        );
        // The slow path inlined into the hot one: its invlpg is now on the hot path, and
        // the slow path the check must examine is gone.
        assert_problems(
            "  100290:\tcall   1002c0 <quickmap::deferred::<impl quickmap::quick_map::\
             QuickMap<P,M,_,I>>::cold_remove_uncached>",
            "  100290:\tinvlpg BYTE PTR [rsi]",
            &[
                "qmk_deferred_remove_page: hot path has 1 invlpg, expected exactly 0 \
                 (qmk_deferred_remove_page at 0x100290)",
                "qmk_deferred_remove_page: reaches no cold path `…::cold_remove_uncached`, \
                 which must hold exactly 1 invlpg and exactly 0 CR3 write(s)",
            ],
        );
    }

    #[test]
    fn deferred_flush_must_write_cr3_and_not_invlpg() {
        assert_problems(
            "  100243:\tmov    cr3,rax",
            "  100243:\tmov    rbx,rax",
            &[format!(
                "qmk_deferred_enter_page: cold path {FLUSH} has 0 CR3 write(s) (mov cr3), \
                 expected at least 1"
            )],
        );
        assert_problems(
            "  100200:\tmov    QWORD PTR [rdi],0x0",
            "  100200:\tinvlpg BYTE PTR [rdi]",
            &[format!(
                "qmk_deferred_enter_page: cold path {FLUSH} has 1 invlpg, expected exactly 0 \
                 ({FLUSH} at 0x100200)"
            )],
        );
        assert_problems(
            "  1001d0:\tcall   100200 <quickmap::deferred::<impl quickmap::quick_map::\
             QuickMap<P,M,_,I>>::cold_flush_free_windows>",
            "  1001d0:\tnop",
            &[
                "qmk_deferred_enter_page: reaches no cold path `…::cold_flush_free_windows`, \
              which must hold exactly 0 invlpg and at least 1 CR3 write(s)",
            ],
        );
    }

    #[test]
    fn a_lock_prefix_fails_on_any_path() {
        // Hot paths, in the root itself and in a function it reaches (named once per
        // root that reaches it).
        assert_problems(
            "  100289:\tand    DWORD PTR [rsi],0xfffffffe",
            "  100289:\tlock and DWORD PTR [rsi],0xfffffffe",
            &[
                "qmk_deferred_remove_page: locked instruction in qmk_deferred_remove_page at \
              0x100289: lock and DWORD PTR [rsi],0xfffffffe",
            ],
        );
        assert_problems(
            "  100080:\tadd    DWORD PTR gs:0x10,0x1",
            "  100080:\tlock add DWORD PTR [rip+0x10],0x1",
            &[
                "pmap_quick_enter_page: locked instruction in qmk::arch::critical_enter at \
                 0x100080: lock add DWORD PTR [rip+0x10],0x1",
                "qmk_deferred_enter_page: locked instruction in qmk::arch::critical_enter at \
                 0x100080: lock add DWORD PTR [rip+0x10],0x1",
                "qmk_local_enter_page: locked instruction in qmk::arch::critical_enter at \
                 0x100080: lock add DWORD PTR [rip+0x10],0x1",
            ],
        );
        // Both slow paths, in a function the slow path calls too.
        assert_problems(
            "  100240:\tmov    rax,cr3",
            "  100240:\txchg   QWORD PTR [rdi],rax",
            &[format!(
                "qmk_deferred_enter_page: cold path {FLUSH}: locked instruction in \
                 <qmk::Mmu as quickmap::mmu::Mmu>::flush_all at 0x100240: xchg QWORD PTR \
                 [rdi],rax"
            )],
        );
        assert_problems(
            "  1002c0:\tmov    QWORD PTR [rcx+rdx*8],0x0",
            "  1002c0:\tlock or QWORD PTR [rcx+rdx*8],0x0",
            &[format!(
                "qmk_deferred_remove_page: cold path {UNCACHED}: locked instruction in \
                 {UNCACHED} at 0x1002c0: lock or QWORD PTR [rcx+rdx*8],0x0"
            )],
        );
    }

    #[test]
    fn an_unexpected_slow_path_is_reported_and_checked_for_locks() {
        // The strict remove reaching the deferred instance's uncached path: reported
        // with its counts; its invlpg is not the hot path's, so the hot path fails.
        let text = sample_with(
            "  1000a7:\tcall   1000c0 <<qmk::Mmu as quickmap::mmu::Mmu>::clear>",
            "  1000a7:\tcall   1002c0 <quickmap::deferred::<impl quickmap::quick_map::\
             QuickMap<P,M,_,I>>::cold_remove_uncached>",
        )
        .replace(
            "  1002c0:\tmov    QWORD PTR [rcx+rdx*8],0x0",
            "  1002c0:\tlock or QWORD PTR [rcx+rdx*8],0x0",
        );
        let outcome = check_disassembly(&text, Arch::X86_64);
        assert!(outcome.report.contains(&format!(
            "pmap_quick_remove_page: cold path {UNCACHED}: 3 instructions in 1 function(s) \
             ({UNCACHED} 3); 1 invlpg ({UNCACHED} at 0x1002c8); 0 CR3 write(s); 1 locked"
        )));
        assert_eq!(
            outcome.problems,
            [
                "pmap_quick_remove_page: hot path has 0 invlpg, expected exactly 1".to_string(),
                format!(
                    "pmap_quick_remove_page: cold path {UNCACHED}: locked instruction in \
                     {UNCACHED} at 0x1002c0: lock or QWORD PTR [rcx+rdx*8],0x0"
                ),
                format!(
                    "qmk_deferred_remove_page: cold path {UNCACHED}: locked instruction in \
                     {UNCACHED} at 0x1002c0: lock or QWORD PTR [rcx+rdx*8],0x0"
                ),
            ]
        );
    }

    #[test]
    fn cold_panic_paths_may_lock() {
        // SAMPLE's rule check, panic and `page_not_resident` all lock; none is counted.
        let outcome = check_disassembly(SAMPLE, Arch::X86_64);
        assert!(outcome.report.iter().all(|line| !line.contains("1 locked")));
    }

    #[test]
    fn missing_symbols_fail_clearly() {
        let outcome = check_disassembly(
            "0000000000000010 <kernel_main>:\n  10:\tret\n",
            Arch::X86_64,
        );
        assert_eq!(outcome.problems.len(), ROOTS.len());
        assert!(outcome.problems[0].starts_with("symbol `pmap_quick_enter_page` not found"));
        assert!(outcome.report.is_empty());
        // The deferred pair is dropped by the linker when nothing references it.
        let deferred = SAMPLE.find("00000000001001c0 <qmk_deferred").unwrap()
            ..SAMPLE.find("0000000000100300 <qmk_local").unwrap();
        let deferred_dropped = SAMPLE.replace(&SAMPLE[deferred], "");
        let outcome = check_disassembly(&deferred_dropped, Arch::X86_64);
        assert_eq!(
            outcome.problems,
            [
                "symbol `qmk_deferred_enter_page` not found in the kernel: it must be exported \
                 with #[no_mangle] and referenced, or the linker drops it (a #[used] static \
                 holding its address keeps it)",
                "symbol `qmk_deferred_remove_page` not found in the kernel: it must be \
                 exported with #[no_mangle] and referenced, or the linker drops it (a #[used] \
                 static holding its address keeps it)",
            ]
        );
        assert_eq!(
            outcome.report.len(),
            9,
            "the strict pair (2 lines) and the local mappings (7) are still checked"
        );
    }

    #[test]
    fn counts() {
        assert!(Count::Exactly(1).admits(1));
        assert!(!Count::Exactly(1).admits(0) && !Count::Exactly(1).admits(2));
        assert!(Count::AtLeast(1).admits(3) && !Count::AtLeast(1).admits(0));
        assert_eq!(Count::AtLeast(1).to_string(), "at least 1");
    }
}

#[cfg(test)]
mod aarch64_tests {
    use super::*;

    /// An aarch64 kernel's disassembly in `llvm-objdump -d -C --no-show-raw-insn`'s
    /// layout, names as LLVM 14 leaves them, keeping every promise.
    pub const SAMPLE: &str = "
qmk:\tfile format elf64-littleaarch64

Disassembly of section .text:

0000000040000000 <pmap_quick_enter_page>:
40000000:      \tmov\tx0, #16 // =0x10
40000004:      \tcbz\tx1, 0x40000100 <quickmap::rules::nesting_beyond_capacity::h0123456789abcdef>
40000008:      \tret

0000000040000040 <pmap_quick_remove_page>:
40000040:      \tstr\txzr, [x8, x9]
40000044:      \tdsb\tishst
40000048:      \ttlbi\tvale1, x13
4000004c:      \tdsb\tnsh
40000050:      \tb\t0x40000080 <qmk::sched::perform_owed_preemption::h0123456789abcdef>

0000000040000080 <qmk::sched::perform_owed_preemption::h0123456789abcdef>:
40000080:      \tldar\tw8, [x0]
40000084:      \tret

0000000040000100 <quickmap::rules::nesting_beyond_capacity::h0123456789abcdef>:
40000100:      \tldaxr\tw8, [x0]
40000104:      \tbl\t0x40000140 <core::panicking::panic_fmt::h0123456789abcdef>

0000000040000140 <core::panicking::panic_fmt::h0123456789abcdef>:
40000140:      \tbrk\t#0x1

0000000040000180 <qmk_deferred_enter_page>:
40000180:      \ttbnz\tw1, #3, 0x400001c0 <quickmap::deferred::_$LT$impl$u20$quickmap..quick_map..QuickMap$LT$P$C$M$C$_$C$I$GT$$GT$::cold_flush_free_windows::h0123456789abcdef>
40000184:      \tret

00000000400001c0 <quickmap::deferred::_$LT$impl$u20$quickmap..quick_map..QuickMap$LT$P$C$M$C$_$C$I$GT$$GT$::cold_flush_free_windows::h0123456789abcdef>:
400001c0:      \ttlbi\tvmalle1
400001c4:      \tret

0000000040000200 <qmk_deferred_remove_page>:
40000200:      \tb.ne\t0x40000240 <quickmap::deferred::_$LT$impl$u20$quickmap..quick_map..QuickMap$LT$P$C$M$C$_$C$I$GT$$GT$::cold_remove_uncached::h0123456789abcdef>
40000204:      \tret

0000000040000240 <quickmap::deferred::_$LT$impl$u20$quickmap..quick_map..QuickMap$LT$P$C$M$C$_$C$I$GT$$GT$::cold_remove_uncached::h0123456789abcdef>:
40000240:      \ttlbi\tvale1, x9
40000244:      \tret

0000000040000300 <qmk_local_enter_page>:
40000300:      \tstr\tx9, [x8, x10]
40000304:      \tret

0000000040000340 <qmk_local_remove_page>:
40000340:      \tstr\txzr, [x8, x9]
40000344:      \tdsb\tishst
40000348:      \ttlbi\tvale1, x13
4000034c:      \tret

0000000040000380 <qmk_local_switch_out>:
40000380:      \tcbnz\tw8, 0x400003c0 <quickmap::local::_$LT$impl$u20$quickmap..local..LocalQuickMap$LT$P$C$M$C$_$GT$$GT$::cold_save_local_slots::h0123456789abcdef>
40000384:      \tret

00000000400003c0 <quickmap::local::_$LT$impl$u20$quickmap..local..LocalQuickMap$LT$P$C$M$C$_$GT$$GT$::cold_save_local_slots::h0123456789abcdef>:
400003c0:      \tstr\txzr, [x8, x9]
400003c4:      \ttlbi\tvale1, x13
400003c8:      \tret

0000000040000400 <qmk_local_switch_in>:
40000400:      \tcbnz\tw8, 0x40000440 <quickmap::local::_$LT$impl$u20$quickmap..local..LocalQuickMap$LT$P$C$M$C$_$GT$$GT$::cold_restore_local_slots::h0123456789abcdef>
40000404:      \tret

0000000040000440 <quickmap::local::_$LT$impl$u20$quickmap..local..LocalQuickMap$LT$P$C$M$C$_$GT$$GT$::cold_restore_local_slots::h0123456789abcdef>:
40000440:      \tstr\tx9, [x8, x10]
40000444:      \tret
";

    fn problems_with(from: &str, to: &str) -> Vec<String> {
        assert!(SAMPLE.contains(from), "{from}");
        check_disassembly(&SAMPLE.replacen(from, to, 1), Arch::Aarch64).problems
    }

    #[test]
    fn names_are_finished_and_branches_followed() {
        let functions = parse_disassembly(SAMPLE, Arch::Aarch64);
        assert_eq!(
            functions[6].name,
            "quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::\
             cold_flush_free_windows"
        );
        assert_eq!(functions[2].name, "qmk::sched::perform_owed_preemption");
        let enter = &functions[0].instructions;
        assert_eq!(
            enter[0].operands, "x0, #16",
            "`//` starts the comment, `#` does not"
        );
        assert_eq!(enter[1].branch_target, Some(0x40000100));
        assert_eq!(functions[5].instructions[0].branch_target, Some(0x400001c0));
        assert!(functions[1].instructions[4].is_jump());
        assert!(
            !functions[2].instructions[0].is_locked(),
            "ldar is a plain load"
        );
        assert!(
            functions[3].instructions[0].is_locked(),
            "ldaxr is exclusive"
        );
    }

    #[test]
    fn sample_kernel_passes() {
        let outcome = check_disassembly(SAMPLE, Arch::Aarch64);
        assert_eq!(outcome.problems, Vec::<String>::new());
        assert!(
            outcome.report[1].contains(
                "1 tlbi vale1, expected exactly 1 (pmap_quick_remove_page at 0x40000048); 0 \
                 tlbi vmalle1, expected exactly 0; 0 atomic; 0 broadcast tlbi (...is)"
            ),
            "{}",
            outcome.report[1]
        );
    }

    #[test]
    fn broadcast_invalidation_fails() {
        assert_eq!(
            problems_with("tlbi\tvale1, x13", "tlbi\tvale1is, x13"),
            [
                "pmap_quick_remove_page: hot path has 0 tlbi vale1, expected exactly 1",
                "pmap_quick_remove_page: broadcast invalidation (a local one suffices for a \
                 per-CPU window) in pmap_quick_remove_page at 0x40000048: tlbi vale1is, x13"
            ]
        );
    }

    #[test]
    fn atomics_and_missing_flushes_fail() {
        assert_eq!(
            problems_with("ldar\tw8, [x0]", "ldadd\tw9, w8, [x0]"),
            ["pmap_quick_remove_page: atomic instruction in \
                 qmk::sched::perform_owed_preemption at 0x40000080: ldadd w9, w8, [x0]"]
        );
        assert_eq!(
            problems_with("tlbi\tvmalle1", "tlbi\tvmalle1is"),
            [
                "qmk_deferred_enter_page: cold path quickmap::deferred::<impl \
                 quickmap::quick_map::QuickMap<P,M,_,I>>::cold_flush_free_windows has 0 tlbi \
                 vmalle1 (local full flush), expected at least 1",
                "qmk_deferred_enter_page: cold path quickmap::deferred::<impl \
                 quickmap::quick_map::QuickMap<P,M,_,I>>::cold_flush_free_windows: broadcast \
                 invalidation (a local one suffices for a per-CPU window) in \
                 quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::\
                 cold_flush_free_windows at 0x400001c0: tlbi vmalle1is"
            ]
        );
    }
}
