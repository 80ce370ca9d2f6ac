//! Parses a disassembly into functions and instructions: only what the static check
//! needs (prefixes, mnemonic, operands, direct branch targets), and what each
//! instruction is to the check (a call, a jump, a return, a single-page or full local
//! invalidation, a broadcast one, an atomic). x86_64: the text of GNU `objdump -d -C
//! --no-show-raw-insn -M intel`; aarch64: that of `llvm-objdump -d -C
//! --no-show-raw-insn`, whose legacy-mangled names this module finishes demangling.

use crate::arch::Arch;

/// Instruction prefixes objdump prints before the mnemonic, as separate words.
const PREFIXES: [&str; 16] = [
    "lock", "rep", "repz", "repe", "repnz", "repne", "data16", "data32", "addr32", "notrack",
    "bnd", "cs", "ds", "es", "fs", "gs",
];

/// One function (one symbol) of the disassembly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The (demangled) symbol name.
    pub name: String,
    /// Its first address.
    pub address: u64,
    /// Its instructions, in address order.
    pub instructions: Vec<Instruction>,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The instruction set it is of.
    pub arch: Arch,
    /// Where it is.
    pub address: u64,
    /// Prefix words (`lock`, `rep`...), in order.
    pub prefixes: Vec<String>,
    /// The mnemonic (`mov`, `call`, `invlpg`...).
    pub mnemonic: String,
    /// The operands as printed, without objdump's `# ...` comment.
    pub operands: String,
    /// For `call ADDR <...>` and `jCC ADDR <...>`: the target address. Indirect
    /// branches (`call rax`, `call QWORD PTR [...]`) have none.
    pub branch_target: Option<u64>,
}

impl Instruction {
    /// Whether it is a call (direct or not): `call`; `bl`, `blr`.
    pub fn is_call(&self) -> bool {
        match self.arch {
            Arch::X86_64 => self.mnemonic == "call",
            Arch::Aarch64 => matches!(self.mnemonic.as_str(), "bl" | "blr"),
        }
    }

    /// Whether it is a jump, conditional or not: `jCC`, `jmp`; `b`, `b.CC`, `br`,
    /// `cbz`, `cbnz`, `tbz`, `tbnz`.
    pub fn is_jump(&self) -> bool {
        let mnemonic = self.mnemonic.as_str();
        match self.arch {
            Arch::X86_64 => mnemonic.starts_with('j'),
            Arch::Aarch64 => {
                matches!(mnemonic, "b" | "br" | "cbz" | "cbnz" | "tbz" | "tbnz")
                    || mnemonic.starts_with("b.")
            }
        }
    }

    /// Whether it returns (or leaves the kernel's control flow for an exception
    /// return): `ret`, `iret`, `sysret`; `ret`, `eret`.
    pub fn is_return(&self) -> bool {
        let mnemonic = self.mnemonic.as_str();
        match self.arch {
            Arch::X86_64 => ["ret", "iret", "sysret"]
                .iter()
                .any(|r| mnemonic.starts_with(r)),
            Arch::Aarch64 => matches!(mnemonic, "ret" | "eret" | "retaa" | "retab"),
        }
    }

    /// Whether it is a call or jump whose target is not in the instruction.
    pub fn is_indirect_branch(&self) -> bool {
        let unconditional = match self.arch {
            Arch::X86_64 => self.mnemonic == "jmp",
            Arch::Aarch64 => self.mnemonic == "br",
        };
        (self.is_call() || unconditional) && self.branch_target.is_none()
    }

    /// Whether it is an atomic read-modify-write, the stuff of locks. x86_64: a `lock`
    /// prefix, or `xchg` with a memory operand, which locks without one. aarch64: an
    /// exclusive load or store (`ldxr`, `ldaxr`, `stxr`, `stlxr` and their byte, half
    /// and pair forms) or an LSE atomic (`cas`, `swp`, `ldadd`, `stadd`... in every
    /// ordering and size); plain acquire/release accesses (`ldar`, `stlr`) are not.
    pub fn is_locked(&self) -> bool {
        match self.arch {
            Arch::X86_64 => {
                self.prefixes.iter().any(|p| p == "lock")
                    || (self.mnemonic == "xchg" && self.operands.contains('['))
            }
            Arch::Aarch64 => {
                const ATOMIC_PREFIXES: [&str; 22] = [
                    "ldxr", "ldxp", "ldaxr", "ldaxp", "stxr", "stxp", "stlxr", "stlxp", "cas",
                    "swp", "ldadd", "ldclr", "ldeor", "ldset", "ldsmax", "ldsmin", "ldumax",
                    "ldumin", "stadd", "stclr", "steor", "stset",
                ];
                const STORE_MINMAX: [&str; 4] = ["stsmax", "stsmin", "stumax", "stumin"];
                let mnemonic = self.mnemonic.as_str();
                ATOMIC_PREFIXES
                    .iter()
                    .chain(&STORE_MINMAX)
                    .any(|prefix| mnemonic.starts_with(prefix))
            }
        }
    }

    /// The TLB operation of a `tlbi` (`vale1`, `vmalle1is`...), lower case.
    fn tlbi_operation(&self) -> Option<String> {
        (self.arch == Arch::Aarch64 && self.mnemonic == "tlbi").then(|| {
            let operation = self.operands.split(',').next().unwrap_or_default();
            operation.trim().to_ascii_lowercase()
        })
    }

    /// Whether it invalidates one page's translation on this CPU only: `invlpg`;
    /// `tlbi vale1`/`vae1` (and the all-ASID `vaale1`/`vaae1`), not their inner
    /// shareable `...is` forms, which [`is_broadcast_invalidation`]
    /// (Self::is_broadcast_invalidation) names.
    pub fn is_invlpg(&self) -> bool {
        match self.arch {
            Arch::X86_64 => self.mnemonic == "invlpg",
            Arch::Aarch64 => self
                .tlbi_operation()
                .is_some_and(|op| matches!(op.as_str(), "vale1" | "vae1" | "vaale1" | "vaae1")),
        }
    }

    /// Whether it flushes every non-global translation of this CPU: a CR3 write
    /// (`mov cr3,REG`); `tlbi vmalle1` (every EL1 translation of this CPU).
    pub fn is_cr3_write(&self) -> bool {
        match self.arch {
            Arch::X86_64 => self.mnemonic == "mov" && self.operands.starts_with("cr3,"),
            Arch::Aarch64 => self.tlbi_operation().is_some_and(|op| op == "vmalle1"),
        }
    }

    /// Whether it invalidates on every CPU of the inner shareable domain (`tlbi
    /// ...is`): the broadcast a per-CPU window never needs. x86_64 has no such
    /// instruction (a shootdown there is an IPI).
    pub fn is_broadcast_invalidation(&self) -> bool {
        self.tlbi_operation().is_some_and(|op| op.ends_with("is"))
    }

    /// The instruction as objdump printed it, prefixes included, without its address
    /// and comment: `lock xadd QWORD PTR [rip+0x10],rax`.
    pub fn text(&self) -> String {
        let mut words = self.prefixes.clone();
        words.push(self.mnemonic.clone());
        if !self.operands.is_empty() {
            words.push(self.operands.clone());
        }
        words.join(" ")
    }
}

/// Parses a whole disassembly of `arch` code. Lines that are neither a function
/// header (`ADDR <NAME>:`) nor an instruction (`  ADDR:\tTEXT`) are skipped.
pub fn parse_disassembly(text: &str, arch: Arch) -> Vec<Function> {
    let mut functions: Vec<Function> = Vec::new();
    for line in text.lines() {
        if let Some((address, name)) = parse_header(line) {
            functions.push(Function {
                name: finish_demangling(&name),
                address,
                instructions: Vec::new(),
            });
        } else if let Some(instruction) = parse_instruction_of(line, arch) {
            if let Some(function) = functions.last_mut() {
                function.instructions.push(instruction);
            }
        }
    }
    functions
}

/// `0000000000100099 <long_mode_entry>:`. Demangled names contain `<` and `>`
/// themselves (`<T as Trait>::f`), so the name runs from the first `<` to the final
/// `>:`.
fn parse_header(line: &str) -> Option<(u64, String)> {
    let (address, rest) = line.split_once(' ')?;
    let name = rest.strip_prefix('<')?.strip_suffix(">:")?;
    Some((u64::from_str_radix(address, 16).ok()?, name.to_string()))
}

/// What LLVM 14's `llvm-objdump -C` leaves of a legacy-mangled Rust name
/// (`quickmap::deferred::_$LT$impl$u20$quickmap..quick_map..QuickMap$LT$P$GT$$GT$::f::h0123456789abcdef`),
/// finished as GNU objdump prints it (`quickmap::deferred::<impl
/// quickmap::quick_map::QuickMap<P>>::f`): the hash dropped, the escapes decoded. A
/// demangled name passes unchanged.
pub fn finish_demangling(name: &str) -> String {
    let mut name = name;
    if let Some((path, hash)) = name.rsplit_once("::h") {
        if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            name = path;
        }
    }
    if !name.contains('$') && !name.contains("..") {
        return name.to_string();
    }
    const ESCAPES: [(&str, &str); 17] = [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$u20$", " "),
        ("$C$", ","),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$LP$", "("),
        ("$RP$", ")"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u27$", "'"),
        ("$u3b$", ";"),
        ("$u7e$", "~"),
        ("$u21$", "!"),
        ("$u23$", "#"),
    ];
    // A segment that starts with an escape carries a `_` before it.
    let mut text = name.replace("::_$", "::$").replace("..", "::");
    if let Some(rest) = text.strip_prefix("_$") {
        text = format!("${rest}");
    }
    for (escape, character) in ESCAPES {
        text = text.replace(escape, character);
    }
    text
}

/// `  1000ba:\tcall   1120b0 <qmk_x86_64_bsp_entry>` (x86_64, for the unit tests).
#[cfg(test)]
fn parse_instruction(line: &str) -> Option<Instruction> {
    parse_instruction_of(line, Arch::X86_64)
}

/// `  1000ba:\tcall   1120b0 <qmk_x86_64_bsp_entry>`;
/// `40254668:      \tb\t0x40230e08 <qmk::sched::...>`.
fn parse_instruction_of(line: &str, arch: Arch) -> Option<Instruction> {
    let (address, text) = line.trim_start().split_once(':')?;
    let address = u64::from_str_radix(address, 16).ok()?;
    // x86_64's comments start with `#`; aarch64's with `//` (`#` marks its
    // immediates).
    let comment = match arch {
        Arch::X86_64 => "#",
        Arch::Aarch64 => "//",
    };
    let text = match text.split_once(comment) {
        Some((code, _comment)) => code,
        None => text,
    };
    let mut words = text.split_whitespace().peekable();
    let mut prefixes = Vec::new();
    while let Some(word) = words.next_if(|w| arch == Arch::X86_64 && PREFIXES.contains(w)) {
        prefixes.push(word.to_string());
    }
    let mnemonic = words.next()?.to_string();
    let operands = words.collect::<Vec<_>>().join(" ");
    let mut instruction = Instruction {
        arch,
        address,
        prefixes,
        mnemonic,
        operands,
        branch_target: None,
    };
    if instruction.is_call() || instruction.is_jump() {
        instruction.branch_target = direct_target(&instruction.operands);
    }
    Some(instruction)
}

/// `1120b0 <name+0x10>` gives 0x1120b0, and so do aarch64's `0x1120b0 <name>`, `w1,
/// 0x1120b0 <name>` (`cbz`) and `w1, #3, 0x1120b0 <name>` (`tbz`): the last operand
/// before the symbol; a register or memory operand gives `None`.
fn direct_target(operands: &str) -> Option<u64> {
    let (before, _symbol) = operands.split_once(" <")?;
    let address = before.rsplit([' ', ',']).next()?;
    let address = address.strip_prefix("0x").unwrap_or(address);
    u64::from_str_radix(address, 16).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small kernel's disassembly, in objdump's exact layout (tabs included), that
    /// keeps every promise of the static check: the strict pair's one `invlpg` is the
    /// remove's; the deferred pair's hot paths have none, its uncached remove's slow
    /// path has one, its flush's slow path writes CR3 (in a function it calls); the
    /// locked instructions are on cold panic paths, one of them found cold only
    /// because it cannot return (`page_not_resident`).
    pub const SAMPLE: &str = "
qmk:     file format elf64-x86-64


Disassembly of section .text:

0000000000100000 <pmap_quick_enter_page>:
  100000:\tpush   rbx
  100001:\tcall   100040 <quickmap::quick_map::QuickMap<P,M>::enter>
  100006:\tpop    rbx
  100007:\tret
\t...

0000000000100040 <quickmap::quick_map::QuickMap<P,M>::enter>:
  100040:\tmov    rax,QWORD PTR gs:0x8
  100049:\ttest   rax,rax
  10004c:\tje     100060 <quickmap::quick_map::QuickMap<P,M>::enter+0x20>
  10004e:\tjne    100100 <quickmap::rules::nesting_beyond_capacity>
  100054:\tmov    QWORD PTR [rdi],rsi
  100057:\tjb     100180 <qmk::vm::quick::page_not_resident>
  10005a:\tjmp    100080 <qmk::arch::critical_enter>
  100060:\tcall   QWORD PTR [rip+0x1000]        # 101060 <DW.ref.x>
  100066:\tret

0000000000100080 <qmk::arch::critical_enter>:
  100080:\tadd    DWORD PTR gs:0x10,0x1
  100088:\tret

00000000001000a0 <pmap_quick_remove_page>:
  1000a0:\tmov    QWORD PTR [rdi],0x0
  1000a7:\tcall   1000c0 <<qmk::Mmu as quickmap::mmu::Mmu>::clear>
  1000ac:\tret

00000000001000c0 <<qmk::Mmu as quickmap::mmu::Mmu>::clear>:
  1000c0:\tmov    QWORD PTR [rdi+0x8],0x0
  1000c8:\tinvlpg BYTE PTR [rsi]
  1000cb:\tret

0000000000100100 <quickmap::rules::nesting_beyond_capacity>:
  100100:\tlock xadd QWORD PTR [rip+0x10],rax        # 100118 <x>
  100108:\tcall   100140 <core::panicking::panic_fmt>

0000000000100140 <core::panicking::panic_fmt>:
  100140:\txchg   BYTE PTR [rip+0x10],al
  100146:\tud2

0000000000100180 <qmk::vm::quick::page_not_resident>:
  100180:\tlock inc QWORD PTR [rip+0x20]        # 1001a7 <y>
  100187:\tcall   100140 <core::panicking::panic_fmt>
  10018c:\tint3

00000000001001c0 <qmk_deferred_enter_page>:
  1001c0:\tmov    eax,DWORD PTR [rdi+0x4]
  1001c3:\ttest   eax,eax
  1001c5:\tje     1001d0 <qmk_deferred_enter_page+0x10>
  1001c7:\tmov    QWORD PTR [rdi+rax*8],rsi
  1001cb:\tjmp    100080 <qmk::arch::critical_enter>
  1001d0:\tcall   100200 <quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_flush_free_windows>
  1001d5:\tjmp    1001c7 <qmk_deferred_enter_page+0x7>

0000000000100200 <quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_flush_free_windows>:
  100200:\tmov    QWORD PTR [rdi],0x0
  100207:\tcall   100240 <<qmk::Mmu as quickmap::mmu::Mmu>::flush_all>
  10020c:\tjae    100140 <core::panicking::panic_fmt>
  100212:\tret

0000000000100240 <<qmk::Mmu as quickmap::mmu::Mmu>::flush_all>:
  100240:\tmov    rax,cr3
  100243:\tmov    cr3,rax
  100246:\tret

0000000000100280 <qmk_deferred_remove_page>:
  100280:\tmov    rax,QWORD PTR [rdi+0x10]
  100284:\tcmp    eax,0x1
  100287:\tjne    100290 <qmk_deferred_remove_page+0x10>
  100289:\tand    DWORD PTR [rsi],0xfffffffe
  10028f:\tret
  100290:\tcall   1002c0 <quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_remove_uncached>
  100295:\tret

00000000001002c0 <quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::cold_remove_uncached>:
  1002c0:\tmov    QWORD PTR [rcx+rdx*8],0x0
  1002c8:\tinvlpg BYTE PTR [rsi]
  1002cb:\tret

0000000000100300 <qmk_local_enter_page>:
  100300:\tmov    rax,QWORD PTR gs:0x30
  100309:\ttest   rax,rax
  10030c:\tje     100320 <qmk_local_enter_page+0x20>
  10030e:\tmov    QWORD PTR [rdi+rax*8],rsi
  100312:\tjmp    100080 <qmk::arch::critical_enter>
  100320:\tcall   100400 <quickmap::local::LocalQuickMap<P,M,_>::cold_local_slots_exhausted>
  100325:\tret

0000000000100340 <qmk_local_remove_page>:
  100340:\tmov    QWORD PTR [rdi],0x0
  100347:\tinvlpg BYTE PTR [rsi]
  10034a:\tret

0000000000100360 <qmk_local_switch_out>:
  100360:\tmov    eax,DWORD PTR [rdi+0x10]
  100363:\ttest   eax,eax
  100365:\tjne    100380 <quickmap::local::LocalQuickMap<P,M,_>::cold_save_local_slots>
  100367:\tret

0000000000100380 <quickmap::local::LocalQuickMap<P,M,_>::cold_save_local_slots>:
  100380:\tmov    QWORD PTR [rcx+rdx*8],0x0
  100388:\tinvlpg BYTE PTR [rsi]
  10038b:\tjne    100380 <quickmap::local::LocalQuickMap<P,M,_>::cold_save_local_slots>
  10038d:\tret

00000000001003c0 <qmk_local_switch_in>:
  1003c0:\tmov    eax,DWORD PTR [rdi+0x10]
  1003c3:\ttest   eax,eax
  1003c5:\tjne    1003e0 <quickmap::local::LocalQuickMap<P,M,_>::cold_restore_local_slots>
  1003c7:\tret

00000000001003e0 <quickmap::local::LocalQuickMap<P,M,_>::cold_restore_local_slots>:
  1003e0:\tmov    QWORD PTR [rcx+rdx*8],rax
  1003e4:\tret

0000000000100400 <quickmap::local::LocalQuickMap<P,M,_>::cold_local_slots_exhausted>:
  100400:\tsub    DWORD PTR gs:0x10,0x1
  100408:\tret
";

    #[test]
    fn functions_and_instructions() {
        let functions = parse_disassembly(SAMPLE, Arch::X86_64);
        let names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pmap_quick_enter_page",
                "quickmap::quick_map::QuickMap<P,M>::enter",
                "qmk::arch::critical_enter",
                "pmap_quick_remove_page",
                "<qmk::Mmu as quickmap::mmu::Mmu>::clear",
                "quickmap::rules::nesting_beyond_capacity",
                "core::panicking::panic_fmt",
                "qmk::vm::quick::page_not_resident",
                "qmk_deferred_enter_page",
                "quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::\
                 cold_flush_free_windows",
                "<qmk::Mmu as quickmap::mmu::Mmu>::flush_all",
                "qmk_deferred_remove_page",
                "quickmap::deferred::<impl quickmap::quick_map::QuickMap<P,M,_,I>>::\
                 cold_remove_uncached",
                "qmk_local_enter_page",
                "qmk_local_remove_page",
                "qmk_local_switch_out",
                "quickmap::local::LocalQuickMap<P,M,_>::cold_save_local_slots",
                "qmk_local_switch_in",
                "quickmap::local::LocalQuickMap<P,M,_>::cold_restore_local_slots",
                "quickmap::local::LocalQuickMap<P,M,_>::cold_local_slots_exhausted",
            ]
        );
        assert_eq!(functions[0].address, 0x100000);
        assert_eq!(
            functions[0].instructions.len(),
            4,
            "`...` is not an instruction"
        );
        let call = &functions[0].instructions[1];
        assert!(call.is_call());
        assert_eq!(call.branch_target, Some(0x100040));
        assert_eq!(
            call.operands,
            "100040 <quickmap::quick_map::QuickMap<P,M>::enter>"
        );
        let slow_call = &functions[8].instructions[5];
        assert_eq!(slow_call.branch_target, Some(0x100200));
    }

    #[test]
    fn prefixes_locks_and_indirect_branches() {
        let functions = parse_disassembly(SAMPLE, Arch::X86_64);
        let enter = &functions[1].instructions;
        assert_eq!(enter[0].operands, "rax,QWORD PTR gs:0x8");
        assert_eq!(enter[2].branch_target, Some(0x100060));
        let indirect = &enter[7];
        assert!(indirect.is_indirect_branch());
        assert_eq!(indirect.operands, "QWORD PTR [rip+0x1000]");
        let xadd = &functions[5].instructions[0];
        assert_eq!(xadd.prefixes, ["lock"]);
        assert_eq!(xadd.mnemonic, "xadd");
        assert!(xadd.is_locked());
        assert_eq!(xadd.text(), "lock xadd QWORD PTR [rip+0x10],rax");
        assert!(functions[6].instructions[0].is_locked(), "xchg with memory");
        let register_xchg = parse_instruction("  10:\txchg   ax,ax").unwrap();
        assert!(!register_xchg.is_locked());
        let rep = parse_instruction("  10:\trep stos QWORD PTR es:[rdi],rax").unwrap();
        assert_eq!((rep.prefixes.len(), rep.mnemonic.as_str()), (1, "stos"));
        assert!(!rep.is_locked());
        assert!(parse_instruction("  10:\tcall   rax")
            .unwrap()
            .is_indirect_branch());
        assert_eq!(functions[6].instructions[1].text(), "ud2");
    }

    #[test]
    fn invalidations_and_cr3_writes() {
        let functions = parse_disassembly(SAMPLE, Arch::X86_64);
        assert!(functions[4].instructions[1].is_invlpg());
        let flush = &functions[10].instructions;
        assert!(!flush[0].is_cr3_write(), "a read of CR3 flushes nothing");
        assert!(flush[1].is_cr3_write());
        assert!(!flush.iter().any(Instruction::is_invlpg));
        let cr4 = parse_instruction("  10:\tmov    cr4,rax").unwrap();
        assert!(!cr4.is_cr3_write());
    }
}
