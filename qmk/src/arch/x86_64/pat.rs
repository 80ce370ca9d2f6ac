//! The page attribute table: which memory type a page-table entry selects.
//!
//! A 4 KiB PTE names one of eight PAT entries with three bits: PAT (bit 7),
//! PCD (bit 4) and PWT (bit 3), index = PAT·4 + PCD·2 + PWT. qmk programs
//! the IA32_PAT MSR so that every memory type is reachable:
//!
//! | index | PAT PCD PWT | type            | note                              |
//! |-------|-------------|-----------------|-----------------------------------|
//! | 0     | 0 0 0       | write-back      | power-on default kept             |
//! | 1     | 0 0 1       | write-through   | power-on default kept             |
//! | 2     | 0 1 0       | uncached-minus  | power-on default kept             |
//! | 3     | 0 1 1       | uncached        | power-on default kept             |
//! | 4     | 1 0 0       | write-combining |                                   |
//! | 5     | 1 0 1       | write-protect   |                                   |
//! | 6     | 1 1 0       | uncached-minus  | unused duplicate                  |
//! | 7     | 1 1 1       | uncached        | unused duplicate                  |
//!
//! Entries 0–3 keep their power-on values so that entries written before the
//! MSR is programmed (the boot page tables) mean the same after. This is the
//! kernel's own copy of the encoding; the quickmap library's x86_64 module
//! will own it later.

use ::x86_64::registers::model_specific::Msr;
use ::x86_64::structures::paging::PageTableFlags;

/// The IA32_PAT model-specific register.
const IA32_PAT: u32 = 0x277;

/// Bit 7 of a 4 KiB PTE selects the upper half of the PAT. (In 2 MiB and
/// 1 GiB entries bit 7 is the page-size bit and PAT moves to bit 12.)
pub const PTE_4KIB_PAT: PageTableFlags = PageTableFlags::HUGE_PAGE;

/// A memory type (cacheability) a mapping can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryType {
    WriteBack,
    WriteThrough,
    UncachedMinus,
    Uncached,
    WriteCombining,
    WriteProtect,
}

impl MemoryType {
    /// Every memory type.
    pub const ALL: [MemoryType; 6] = [
        MemoryType::WriteBack,
        MemoryType::WriteThrough,
        MemoryType::UncachedMinus,
        MemoryType::Uncached,
        MemoryType::WriteCombining,
        MemoryType::WriteProtect,
    ];

    /// The architectural encoding of this type in a PAT MSR entry.
    pub const fn pat_encoding(self) -> u8 {
        match self {
            MemoryType::Uncached => 0x00,
            MemoryType::WriteCombining => 0x01,
            MemoryType::WriteThrough => 0x04,
            MemoryType::WriteProtect => 0x05,
            MemoryType::WriteBack => 0x06,
            MemoryType::UncachedMinus => 0x07,
        }
    }
}

/// The memory type of each PAT entry, as qmk programs it (table above).
pub const PAT_LAYOUT: [MemoryType; 8] = [
    MemoryType::WriteBack,
    MemoryType::WriteThrough,
    MemoryType::UncachedMinus,
    MemoryType::Uncached,
    MemoryType::WriteCombining,
    MemoryType::WriteProtect,
    MemoryType::UncachedMinus,
    MemoryType::Uncached,
];

/// The IA32_PAT value for [`PAT_LAYOUT`].
pub const fn pat_msr_value() -> u64 {
    let mut value = 0u64;
    let mut index = 0;
    while index < PAT_LAYOUT.len() {
        value |= (PAT_LAYOUT[index].pat_encoding() as u64) << (index * 8);
        index += 1;
    }
    value
}

/// The PTE bits (PAT/PCD/PWT of a 4 KiB entry) that select `memory_type`.
pub fn pte_bits_for_memory_type(memory_type: MemoryType) -> PageTableFlags {
    let index = PAT_LAYOUT
        .iter()
        .position(|&entry| entry == memory_type)
        .expect("PAT_LAYOUT names every memory type");
    pte_bits_for_pat_index(index)
}

fn pte_bits_for_pat_index(index: usize) -> PageTableFlags {
    let mut bits = PageTableFlags::empty();
    bits.set(PageTableFlags::WRITE_THROUGH, index & 0b001 != 0);
    bits.set(PageTableFlags::NO_CACHE, index & 0b010 != 0);
    bits.set(PTE_4KIB_PAT, index & 0b100 != 0);
    bits
}

/// The PAT index a 4 KiB PTE's flags select.
pub fn pat_index_of_pte(flags: PageTableFlags) -> usize {
    usize::from(flags.contains(PageTableFlags::WRITE_THROUGH))
        | usize::from(flags.contains(PageTableFlags::NO_CACHE)) << 1
        | usize::from(flags.contains(PTE_4KIB_PAT)) << 2
}

/// The memory type a 4 KiB PTE's flags select, under the programmed PAT.
pub fn memory_type_of_pte(flags: PageTableFlags) -> MemoryType {
    PAT_LAYOUT[pat_index_of_pte(flags)]
}

/// Reads this CPU's IA32_PAT.
pub fn read_pat_msr() -> u64 {
    // SAFETY: IA32_PAT exists on every x86_64 CPU; reading it has no side effects.
    unsafe { Msr::new(IA32_PAT).read() }
}

/// Programs this CPU's IA32_PAT with [`PAT_LAYOUT`]. Every CPU must do this
/// before it uses page tables with PAT/PCD/PWT bits set.
pub fn program_this_cpu() {
    let mut msr = Msr::new(IA32_PAT);
    // SAFETY: the value encodes only valid memory types, and entries 0–3
    // keep their power-on values, so every page-table entry that is live at
    // this point (none use PAT entries 4–7) keeps its meaning. TLB entries
    // cached with the old attributes therefore stay correct.
    unsafe { msr.write(pat_msr_value()) };
}
