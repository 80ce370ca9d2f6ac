//! The page attribute table: which memory type a page-table entry selects.
//!
//! A 4 KiB PTE names one of eight PAT entries with three bits: PAT (bit 7),
//! PCD (bit 4) and PWT (bit 3), index = PAT·4 + PCD·2 + PWT. The layout and the
//! encoding belong to the quickmap library (`quickmap::arch::x86_64`), whose
//! windows must select the same memory types the rest of the kernel does; this
//! module programs the MSR and translates to the `x86_64` crate's flag type.
//!
//! | index | PAT PCD PWT | type            | note                      |
//! |-------|-------------|-----------------|---------------------------|
//! | 0     | 0 0 0       | write-back      | power-on default kept     |
//! | 1     | 0 0 1       | write-through   | power-on default kept     |
//! | 2     | 0 1 0       | uncached-minus  | power-on default kept     |
//! | 3     | 0 1 1       | uncached        | power-on default kept     |
//! | 4     | 1 0 0       | write-protect   |                           |
//! | 5     | 1 0 1       | write-combining |                           |
//! | 6     | 1 1 0       | uncached-minus  | unused duplicate          |
//! | 7     | 1 1 1       | uncached        | unused duplicate          |
//!
//! Entries 0–3 keep their power-on values so that entries written before the
//! MSR is programmed (the boot page tables) mean the same after.

use ::x86_64::registers::model_specific::Msr;
use ::x86_64::structures::paging::PageTableFlags;
use quickmap::arch::x86_64 as encoding;

pub use quickmap::MemoryAttribute;

/// Bit 7 of a 4 KiB PTE selects the upper half of the PAT. (In 2 MiB and
/// 1 GiB entries bit 7 is the page-size bit and PAT moves to bit 12.)
pub const PTE_4KIB_PAT: PageTableFlags = PageTableFlags::HUGE_PAGE;

/// The value every CPU writes to IA32_PAT.
pub const PAT_MSR_VALUE: u64 = encoding::PAT_MSR_VALUE;

/// The PTE bits (PAT/PCD/PWT of a 4 KiB entry) that select `attribute`.
pub fn pte_bits_for_memory_type(attribute: MemoryAttribute) -> PageTableFlags {
    PageTableFlags::from_bits_truncate(encoding::cache_bits(attribute))
}

/// The PAT index a 4 KiB PTE's flags select.
pub fn pat_index_of_pte(flags: PageTableFlags) -> usize {
    usize::from(flags.contains(PageTableFlags::WRITE_THROUGH))
        | usize::from(flags.contains(PageTableFlags::NO_CACHE)) << 1
        | usize::from(flags.contains(PTE_4KIB_PAT)) << 2
}

/// The memory type a 4 KiB PTE's flags select, under the programmed PAT.
pub fn memory_type_of_pte(flags: PageTableFlags) -> MemoryAttribute {
    encoding::attribute_of(flags.bits())
}

/// Reads this CPU's IA32_PAT.
pub fn read_pat_msr() -> u64 {
    // SAFETY: IA32_PAT exists on every x86_64 CPU; reading it has no side effects.
    unsafe { Msr::new(encoding::IA32_PAT_MSR).read() }
}

/// Programs this CPU's IA32_PAT with [`PAT_MSR_VALUE`]. Every CPU must do this
/// before it uses page tables with PAT/PCD/PWT bits set.
pub fn program_this_cpu() {
    let mut msr = Msr::new(encoding::IA32_PAT_MSR);
    // SAFETY: the value encodes only valid memory types, and entries 0–3
    // keep their power-on values, so every page-table entry that is live at
    // this point (none use PAT entries 4–7) keeps its meaning. TLB entries
    // cached with the old attributes therefore stay correct.
    unsafe { msr.write(PAT_MSR_VALUE) };
}
