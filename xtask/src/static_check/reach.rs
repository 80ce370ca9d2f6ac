//! Which functions a root can run: its direct calls and tail jumps, followed
//! transitively through the kernel, except into cold panic paths and into quickmap's
//! named slow paths.
//!
//! Cold panic paths are skipped on purpose: a rule violation panics (and may lock the
//! console on the way out), but that path ends the kernel; the claim under test is
//! about the path that returns. A function is one when its name says so
//! ([`COLD_MARKERS`]) or when it cannot return at all (no `ret` and no jump out of
//! it: it ends in a call to a panic, e.g. a kernel's `#[cold]` message formatter).
//!
//! Slow paths are quickmap's deliberate out-of-line paths (`#[cold]` functions named
//! `cold_*`, [`SLOW_PATH_MARKER`]): they return, so they are not skipped but recorded,
//! and the check examines each with what it reaches on its own.

use std::collections::{BTreeSet, VecDeque};

use super::disassembly::Function;

/// Substrings of demangled names that mark a cold path: quickmap's rule checks
/// (`rules::`), the panic machinery and the formatting it drags in.
pub const COLD_MARKERS: [&str; 3] = ["rules::", "panic", "fmt"];

/// The substring of a demangled name that marks a slow path of quickmap: a method
/// whose name starts with `cold_`.
pub const SLOW_PATH_MARKER: &str = "::cold_";

/// Whether `name` is on a cold panic path.
pub fn is_cold(name: &str) -> bool {
    COLD_MARKERS.iter().any(|marker| name.contains(marker))
}

/// Whether `name` is one of quickmap's slow paths.
pub fn is_slow_path(name: &str) -> bool {
    name.contains(SLOW_PATH_MARKER)
}

/// What a root can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Indices (into the function list) of the root and everything it reaches, root
    /// first, then in discovery order.
    pub functions: Vec<usize>,
    /// Names of the cold functions branched to but not followed.
    pub cold_skipped: BTreeSet<String>,
    /// Indices of the slow paths branched to, not followed, in discovery order.
    pub slow_paths: Vec<usize>,
    /// Indirect calls or jumps (`call rax`): their targets cannot be known statically.
    pub indirect_branches: usize,
    /// Direct branch targets outside every known function (e.g. into data).
    pub unknown_targets: BTreeSet<u64>,
}

/// An address-sorted view of the functions, to find which one holds an address.
pub struct FunctionMap<'a> {
    functions: &'a [Function],
    /// Indices of `functions` by ascending start address.
    by_address: Vec<usize>,
}

impl<'a> FunctionMap<'a> {
    /// Indexes `functions`.
    pub fn new(functions: &'a [Function]) -> FunctionMap<'a> {
        let mut by_address: Vec<usize> = (0..functions.len()).collect();
        by_address.sort_by_key(|&i| functions[i].address);
        FunctionMap {
            functions,
            by_address,
        }
    }

    /// The index of the function named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.functions.iter().position(|f| f.name == name)
    }

    /// The index of the function whose range holds `address`: it starts at or before
    /// it, and `address` is not past its last instruction.
    pub fn containing(&self, address: u64) -> Option<usize> {
        let slot = self
            .by_address
            .partition_point(|&i| self.functions[i].address <= address);
        let index = self.by_address[slot.checked_sub(1)?];
        let last = self.functions[index].instructions.last()?.address;
        (address <= last).then_some(index)
    }

    /// Whether the function at `index` can return to its caller: it has a return
    /// instruction, or a jump that leaves it (a tail call, or an indirect jump, which
    /// may leave it).
    pub fn may_return(&self, index: usize) -> bool {
        let function = &self.functions[index];
        function.instructions.iter().any(|instruction| {
            instruction.is_return()
                || (instruction.is_jump()
                    && instruction
                        .branch_target
                        .is_none_or(|target| self.containing(target) != Some(index)))
        })
    }

    /// Everything `root` can reach (see the module docs).
    pub fn reach(&self, root: usize) -> Reach {
        let mut reach = Reach {
            functions: vec![root],
            cold_skipped: BTreeSet::new(),
            slow_paths: Vec::new(),
            indirect_branches: 0,
            unknown_targets: BTreeSet::new(),
        };
        let mut queue = VecDeque::from([root]);
        while let Some(current) = queue.pop_front() {
            for instruction in &self.functions[current].instructions {
                if instruction.is_indirect_branch() {
                    reach.indirect_branches += 1;
                }
                let Some(target) = instruction.branch_target else {
                    continue;
                };
                let Some(callee) = self.containing(target) else {
                    reach.unknown_targets.insert(target);
                    continue;
                };
                // A branch inside the function is control flow, not a call.
                if callee == current
                    || reach.functions.contains(&callee)
                    || reach.slow_paths.contains(&callee)
                {
                    continue;
                }
                let name = &self.functions[callee].name;
                if is_cold(name) {
                    reach.cold_skipped.insert(name.clone());
                    continue;
                }
                if is_slow_path(name) {
                    reach.slow_paths.push(callee);
                    continue;
                }
                if !self.may_return(callee) {
                    reach.cold_skipped.insert(name.clone());
                    continue;
                }
                reach.functions.push(callee);
                queue.push_back(callee);
            }
        }
        reach
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::static_check::disassembly::{parse_disassembly, tests::SAMPLE};

    #[test]
    fn cold_and_slow_names() {
        assert!(is_cold("quickmap::rules::double_remove"));
        assert!(is_cold("core::panicking::panic_fmt"));
        assert!(is_cold("<u64 as core::fmt::Debug>::fmt"));
        assert!(!is_cold("quickmap::quick_map::QuickMap<P,M>::enter"));
        let flush = "quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::\
                     cold_flush_free_windows";
        assert!(is_slow_path(flush) && !is_cold(flush));
        assert!(!is_slow_path("quickmap::percpu::scold"));
    }

    #[test]
    fn addresses_map_to_functions() {
        let functions = parse_disassembly(SAMPLE, Arch::X86_64);
        let map = FunctionMap::new(&functions);
        assert_eq!(map.containing(0x100000), Some(0));
        assert_eq!(map.containing(0x100066), Some(1));
        assert_eq!(
            map.containing(0x100070),
            None,
            "padding after the last instruction"
        );
        assert_eq!(map.containing(0xfffff), None);
        assert_eq!(map.find("pmap_quick_remove_page"), Some(3));
        assert_eq!(map.find("missing"), None);
    }

    #[test]
    fn calls_and_tail_jumps_are_followed_but_not_cold_paths() {
        let functions = parse_disassembly(SAMPLE, Arch::X86_64);
        let map = FunctionMap::new(&functions);
        let enter = map.reach(0);
        let names: Vec<&str> = enter
            .functions
            .iter()
            .map(|&i| functions[i].name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "pmap_quick_enter_page",
                "quickmap::quick_map::QuickMap<P,M>::enter",
                "qmk::arch::critical_enter",
            ]
        );
        assert_eq!(
            enter.cold_skipped.iter().collect::<Vec<_>>(),
            [
                "qmk::vm::quick::page_not_resident",
                "quickmap::rules::nesting_beyond_capacity"
            ]
        );
        assert!(enter.slow_paths.is_empty());
        assert_eq!(enter.indirect_branches, 1);
        assert!(enter.unknown_targets.is_empty());
        let remove = map.reach(3);
        assert_eq!(remove.functions, [3, 4]);
        assert!(remove.cold_skipped.is_empty());
    }

    #[test]
    fn slow_paths_are_recorded_not_followed_and_reach_on_their_own() {
        let functions = parse_disassembly(SAMPLE, Arch::X86_64);
        let map = FunctionMap::new(&functions);
        let deferred_enter = map.reach(8);
        assert_eq!(deferred_enter.functions, [8, 2]);
        assert_eq!(deferred_enter.slow_paths, [9]);
        let flush = map.reach(9);
        assert_eq!(flush.functions, [9, 10], "the slow path's own reach");
        assert_eq!(
            flush.cold_skipped.iter().collect::<Vec<_>>(),
            ["core::panicking::panic_fmt"]
        );
        let deferred_remove = map.reach(11);
        assert_eq!(deferred_remove.functions, [11]);
        assert_eq!(deferred_remove.slow_paths, [12]);
    }

    #[test]
    fn functions_that_cannot_return_are_cold() {
        let functions = parse_disassembly(SAMPLE, Arch::X86_64);
        let map = FunctionMap::new(&functions);
        let returns: Vec<bool> = (0..functions.len()).map(|i| map.may_return(i)).collect();
        // Only the rule check, the panic and `page_not_resident` end without returning.
        assert_eq!(
            returns,
            [
                true, true, true, true, true, false, false, false, true, true, true, true, true,
                true, true, true, true, true, true, true
            ]
        );
        let text = "
0000000000000010 <tail_call>:
  10:\tjmp    40 <target>

0000000000000020 <jump_table>:
  20:\tnotrack jmp rax

0000000000000030 <spins_forever>:
  30:\tpause
  32:\tjmp    30 <spins_forever>

0000000000000040 <target>:
  40:\tjne    10 <tail_call>
  42:\tud2
";
        let functions = parse_disassembly(text, Arch::X86_64);
        let map = FunctionMap::new(&functions);
        let returns: Vec<bool> = (0..functions.len()).map(|i| map.may_return(i)).collect();
        assert_eq!(returns, [true, true, false, true]);
    }

    #[test]
    fn recursion_terminates() {
        let text = "
0000000000000010 <a>:
  10:\tcall   20 <b>
  15:\tret

0000000000000020 <b>:
  20:\tcall   10 <a>
  25:\tjmp    30 <c>

0000000000000030 <c>:
  30:\tcall   999 <nowhere>
  35:\tret
";
        let functions = parse_disassembly(text, Arch::X86_64);
        let reach = FunctionMap::new(&functions).reach(0);
        assert_eq!(reach.functions, [0, 1, 2]);
        assert_eq!(
            reach.unknown_targets.into_iter().collect::<Vec<_>>(),
            [0x999]
        );
    }
}
