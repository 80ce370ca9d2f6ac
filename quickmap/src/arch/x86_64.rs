//! x86_64: window page-table entries, memory types through the PAT, and `invlpg`.
//!
//! ## Page-table entry of a window
//!
//! Present, writable, **supervisor-only** (no U/S bit) and **no-execute**: a window holds
//! data for a moment and must never become a gadget for user code or for executing a
//! page's contents. Accessed and dirty are preset so the CPU need not write the entry
//! back while it is in use.
//!
//! The entry is **not global**. A window never lives across a context switch (it pins
//! its thread), and a local slot ([`LocalQuickMap`](crate::LocalQuickMap)) is present
//! only while its thread runs (the switch takes it down), so a global bit would buy
//! nothing, while a non-global entry is also dropped by every CR3 write. With PCIDs this
//! stays correct: a window's entry is present only between `enter` and `remove`, which
//! run on one CPU in one address space, so any TLB entry for it is tagged with that
//! address space's PCID, and the `invlpg` in `remove` (which invalidates the current
//! PCID's entry and global entries for the address) removes it. A local slot is
//! invalidated the same way at its removal and at `switch_out`, which a kernel with
//! PCIDs must call before it loads the next thread's address space (while the PCID
//! the slot was used under is still current). Another CPU never touches this CPU's
//! window or slot addresses, so no shootdown is ever needed.
//!
//! ## Memory types
//!
//! The PAT index of a 4 KiB entry is `PAT << 2 | PCD << 1 | PWT`. quickmap expects the
//! kernel to program `IA32_PAT` with [`PAT_MSR_VALUE`], FreeBSD's layout, whose first
//! four entries equal the power-on default (so entries written before the PAT is
//! programmed keep their meaning):
//!
//! | index | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 |
//! |---|---|---|---|---|---|---|---|---|
//! | type | WB | WT | UC- | UC | WP | WC | UC- | UC |

use super::entry_array::EntryArray;
use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
#[cfg(target_arch = "x86_64")]
use crate::mmu::{Mmu, Window};
use crate::page::MemoryAttribute;

#[cfg(feature = "x86_64")]
#[cfg_attr(docsrs, doc(cfg(feature = "x86_64")))]
pub mod interop;
#[cfg(feature = "x86_64")]
#[cfg_attr(docsrs, doc(cfg(feature = "x86_64")))]
pub use interop::HeldFrame;

/// Present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// Accessible from user mode (never set on windows).
pub const PTE_USER: u64 = 1 << 2;
/// Page-level write-through: PAT index bit 0.
pub const PTE_PWT: u64 = 1 << 3;
/// Page-level cache disable: PAT index bit 1.
pub const PTE_PCD: u64 = 1 << 4;
/// Accessed.
pub const PTE_ACCESSED: u64 = 1 << 5;
/// Dirty.
pub const PTE_DIRTY: u64 = 1 << 6;
/// PAT index bit 2 (in a 4 KiB entry).
pub const PTE_PAT: u64 = 1 << 7;
/// Global: survives CR3 writes (never set on windows; see the module documentation).
pub const PTE_GLOBAL: u64 = 1 << 8;
/// No-execute (needs `EFER.NXE`).
pub const PTE_NO_EXECUTE: u64 = 1 << 63;
/// Bits 12..52: the frame's physical address.
pub const PTE_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The `IA32_PAT` model-specific register.
pub const IA32_PAT_MSR: u32 = 0x277;

/// PAT memory-type encodings (SDM Vol. 3, table "Memory Types That Can Be Encoded With PAT").
mod pat_type {
    pub const UC: u64 = 0x00;
    pub const WC: u64 = 0x01;
    pub const WT: u64 = 0x04;
    pub const WP: u64 = 0x05;
    pub const WB: u64 = 0x06;
    pub const UC_MINUS: u64 = 0x07;
}

/// The value the kernel writes to `IA32_PAT` on every CPU (see the module
/// documentation for the layout).
pub const PAT_MSR_VALUE: u64 = {
    use pat_type::*;
    let entries = [WB, WT, UC_MINUS, UC, WP, WC, UC_MINUS, UC];
    let mut value = 0;
    let mut index = 0;
    while index < 8 {
        value |= entries[index] << (8 * index);
        index += 1;
    }
    value
};

/// The PAT index that selects `attribute` under [`PAT_MSR_VALUE`].
#[inline]
pub const fn pat_index(attribute: MemoryAttribute) -> u64 {
    match attribute {
        MemoryAttribute::WriteBack => 0,
        MemoryAttribute::WriteThrough => 1,
        MemoryAttribute::WeakUncacheable => 2,
        MemoryAttribute::Uncacheable => 3,
        MemoryAttribute::WriteProtected => 4,
        MemoryAttribute::WriteCombining => 5,
    }
}

/// The PAT, PCD and PWT bits of a 4 KiB entry for `attribute`.
#[inline]
pub const fn cache_bits(attribute: MemoryAttribute) -> u64 {
    let index = pat_index(attribute);
    let mut bits = 0;
    if index & 1 != 0 {
        bits |= PTE_PWT;
    }
    if index & 2 != 0 {
        bits |= PTE_PCD;
    }
    if index & 4 != 0 {
        bits |= PTE_PAT;
    }
    bits
}

/// The memory attribute a 4 KiB entry selects, read back from its PAT/PCD/PWT bits.
pub const fn attribute_of(pte: u64) -> MemoryAttribute {
    let index = (pte & PTE_PWT != 0) as u64
        | ((pte & PTE_PCD != 0) as u64) << 1
        | ((pte & PTE_PAT != 0) as u64) << 2;
    match index {
        0 => MemoryAttribute::WriteBack,
        1 => MemoryAttribute::WriteThrough,
        2 | 6 => MemoryAttribute::WeakUncacheable,
        4 => MemoryAttribute::WriteProtected,
        5 => MemoryAttribute::WriteCombining,
        _ => MemoryAttribute::Uncacheable,
    }
}

/// The page-table entry of a window mapping `pa` with `attribute`.
///
/// ```
/// use quickmap::arch::x86_64::*;
/// use quickmap::{MemoryAttribute, PhysAddr};
/// let pte = window_pte(PhysAddr(0x1234_5000), MemoryAttribute::WriteCombining);
/// assert_eq!(pte & PTE_ADDRESS_MASK, 0x1234_5000);
/// assert_eq!(pte & (PTE_USER | PTE_GLOBAL), 0);
/// assert_ne!(pte & PTE_NO_EXECUTE, 0);
/// assert_eq!(attribute_of(pte), MemoryAttribute::WriteCombining);
/// ```
#[inline]
pub const fn window_pte(pa: PhysAddr, attribute: MemoryAttribute) -> u64 {
    (pa.0 & PTE_ADDRESS_MASK) | WINDOW_PTE_FLAGS[attribute as usize]
}

/// Every bit of a window entry but the address, per attribute: one table lookup on the
/// enter path instead of assembling the flags.
const WINDOW_PTE_FLAGS: [u64; MemoryAttribute::ALL.len()] = {
    let mut flags = [0; MemoryAttribute::ALL.len()];
    let mut index = 0;
    while index < flags.len() {
        let attribute = MemoryAttribute::ALL[index];
        flags[attribute as usize] = PTE_PRESENT
            | PTE_WRITABLE
            | PTE_ACCESSED
            | PTE_DIRTY
            | PTE_NO_EXECUTE
            | cache_bits(attribute);
        index += 1;
    }
    flags
};

/// Drop this CPU's translation of the page at `va`.
///
/// # Safety
///
/// Must run at CPL 0 (it is a privileged instruction).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn invlpg(va: VirtAddr) {
    // SAFETY: the caller runs at CPL 0; invlpg only drops cached translations, which the
    // CPU reloads from the page tables when needed.
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) va.0, options(nostack, preserves_flags)) };
}

/// Drop every non-global translation this CPU caches, by writing CR3 back.
///
/// Window entries are never global (see the module documentation), so this drops
/// every window's translation. With PCIDs enabled it drops only the current PCID's
/// entries, while a deferred window's translation may have been cached under any
/// address space's PCID: a kernel that enables PCIDs needs a backend that flushes with
/// `invpcid` type 2 (all contexts) instead.
///
/// # Safety
///
/// Must run at CPL 0, with the current CR3 naming valid page tables (it always does
/// while the kernel runs).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn flush_local_non_global() {
    // SAFETY: the caller runs at CPL 0; writing CR3 back with the value it holds keeps
    // the address space and only drops cached non-global translations.
    unsafe {
        core::arch::asm!(
            "mov {0}, cr3",
            "mov cr3, {0}",
            out(reg) _,
            options(nostack, preserves_flags)
        )
    };
}

/// Entries in a page table of any level: 512 eight-byte entries fill a 4 KiB page.
pub const ENTRIES_PER_TABLE: usize = 512;

/// How many last-level page tables (512 entries, mapping 2 MiB each) hold the entries of
/// `start .. start + len`: what a kernel allocates for its window region, whose length
/// is [`WindowLayout::region_len`](crate::WindowLayout::region_len). [`X86Mmu`] needs the
/// region's entries to form one array, which is one table.
///
/// ```
/// use quickmap::arch::x86_64::leaf_tables;
/// use quickmap::{VirtAddr, WindowLayout};
/// let layout = WindowLayout::guarded(VirtAddr(0xffff_c000_0000_0000), 4);
/// assert_eq!(leaf_tables(layout.base, layout.region_len(16)), 1); // 128 pages
/// assert_eq!(leaf_tables(layout.base, layout.region_len(64)), 1); // 512 pages
/// assert_eq!(leaf_tables(layout.base, layout.region_len(65)), 2);
/// ```
///
/// # Panics
///
/// If the range wraps around the end of the address space.
pub const fn leaf_tables(start: VirtAddr, len: usize) -> usize {
    const SPAN: usize = ENTRIES_PER_TABLE * PAGE_SIZE;
    if len == 0 {
        return 0;
    }
    let last = match start.0.checked_add(len - 1) {
        Some(last) => last,
        None => panic!("quickmap: the range wraps around the end of the address space"),
    };
    last / SPAN - start.0 / SPAN + 1
}

/// The x86_64 window backend: the window region's last-level entries form one array.
///
/// The kernel allocates the page tables of the region once at boot and keeps them
/// forever. The region for 16 CPUs with 4 guarded windows each is 128 pages, well
/// inside one page table, so the entries are contiguous
/// ([`WindowLayout::region_pages`](crate::WindowLayout::region_pages) and
/// [`leaf_tables`] count them). With the feature `x86_64`,
/// `X86Mmu::from_page_table` builds the backend from that table as the `x86_64` crate
/// types it, rather than from a raw pointer.
pub struct X86Mmu {
    entries: EntryArray,
}

// SAFETY: every CPU writes only the entries of its own windows (quickmap's per-CPU
// windows), with volatile single-word stores the page walker reads atomically.
unsafe impl Sync for X86Mmu {}
// SAFETY: as above; the pointer names page tables that live forever.
unsafe impl Send for X86Mmu {}

impl X86Mmu {
    /// A backend for the `region_pages` pages of windows (and guard pages) from
    /// `region_base`.
    ///
    /// # Safety
    ///
    /// 1. `ptes` points to the live, writable last-level entries that translate
    ///    `region_base .. region_base + region_pages * PAGE_SIZE`, in order, and they stay
    ///    in use by every CPU's page tables for as long as the backend lives;
    /// 2. nothing but quickmap writes those entries while it runs, and all are clear;
    ///    and `region_base` is the `window_base` of the quickmap that uses the backend
    ///    (its [`Window::region_page`](crate::Window::region_page)s index this array);
    /// 3. `EFER.NXE` is set on every CPU (the no-execute bit is otherwise reserved) and
    ///    `IA32_PAT` holds [`PAT_MSR_VALUE`].
    pub const unsafe fn new(region_base: VirtAddr, region_pages: usize, ptes: *mut u64) -> X86Mmu {
        X86Mmu {
            entries: EntryArray::new(region_base, region_pages, ptes),
        }
    }

    /// The entry of the window at `va`, e.g. for a test that checks its bits.
    pub fn read_pte(&self, va: VirtAddr) -> u64 {
        // SAFETY: `entry_at` checked that `va` is in the region, whose live entrys
        // form the array (constructor's first promise).
        unsafe { self.entries.entry_at(va, "x86_64").read_volatile() }
    }
}

// SAFETY: entries are written whole with volatile stores while the window is claimed by
// the calling CPU (promise 1); invlpg runs at CPL 0 in the kernel.
#[cfg(target_arch = "x86_64")]
unsafe impl Mmu for X86Mmu {
    /// Bits 12..52 of an entry hold the frame: 4-level and 5-level paging map at most
    /// 52 bits of physical address.
    const PHYS_LIMIT: PhysAddr = PhysAddr(1 << 52);

    #[inline]
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        // `pa` is page-aligned and below `PHYS_LIMIT` (the trait's contract), so it
        // needs no masking to fit the address bits.
        let entry = pa.0 | WINDOW_PTE_FLAGS[attribute as usize];
        debug_assert_eq!(entry, window_pte(pa, attribute));
        // SAFETY: the entry belongs to this CPU's claimed window and is clear.
        unsafe {
            self.entries
                .entry(window.region_page, "x86_64")
                .write_volatile(entry)
        };
    }

    #[inline]
    fn clear_window_pte(&self, window: Window) {
        // SAFETY: as above; the window is about to be released.
        unsafe {
            self.entries
                .entry(window.region_page, "x86_64")
                .write_volatile(0)
        };
    }

    #[inline]
    fn invalidate_local(&self, va: VirtAddr) {
        // SAFETY: quickmap runs in the kernel, at CPL 0.
        unsafe { invlpg(va) }
    }

    #[inline]
    fn invalidate_all_local(&self) {
        // SAFETY: quickmap runs in the kernel, at CPL 0.
        unsafe { flush_local_non_global() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pat_value_keeps_the_power_on_default_in_the_first_four_entries() {
        assert_eq!(PAT_MSR_VALUE & 0xffff_ffff, 0x0007_0406);
        assert_eq!(PAT_MSR_VALUE, 0x0007_0105_0007_0406);
    }

    #[test]
    fn every_attribute_round_trips_through_its_bits() {
        for attribute in MemoryAttribute::ALL {
            let pte = window_pte(PhysAddr(0x7000), attribute);
            assert_eq!(attribute_of(pte), attribute, "{attribute:?}");
            let selected = (PAT_MSR_VALUE >> (8 * pat_index(attribute))) & 0xff;
            let expected = match attribute {
                MemoryAttribute::WriteBack => pat_type::WB,
                MemoryAttribute::WriteThrough => pat_type::WT,
                MemoryAttribute::Uncacheable => pat_type::UC,
                MemoryAttribute::WeakUncacheable => pat_type::UC_MINUS,
                MemoryAttribute::WriteCombining => pat_type::WC,
                MemoryAttribute::WriteProtected => pat_type::WP,
            };
            assert_eq!(
                selected, expected,
                "{attribute:?} selects the wrong PAT entry"
            );
        }
    }

    #[test]
    fn window_entries_are_supervisor_only_no_execute_and_not_global() {
        let pte = window_pte(PhysAddr(0xfff_ffff_f000), MemoryAttribute::WriteBack);
        assert_eq!(
            pte & (PTE_USER | PTE_GLOBAL | PTE_PAT | PTE_PCD | PTE_PWT),
            0
        );
        assert_eq!(
            pte & (PTE_PRESENT | PTE_WRITABLE | PTE_NO_EXECUTE),
            PTE_PRESENT | PTE_WRITABLE | PTE_NO_EXECUTE
        );
        assert_eq!(pte & PTE_ADDRESS_MASK, 0xfff_ffff_f000);
    }

    #[test]
    fn leaf_tables_count_every_2_mib_span_the_range_touches() {
        const SPAN: usize = ENTRIES_PER_TABLE * PAGE_SIZE;
        let base = 0xffff_c000_0000_0000;
        assert_eq!(leaf_tables(VirtAddr(base), 0), 0);
        assert_eq!(leaf_tables(VirtAddr(base), PAGE_SIZE), 1);
        assert_eq!(leaf_tables(VirtAddr(base), SPAN), 1);
        assert_eq!(leaf_tables(VirtAddr(base), SPAN + PAGE_SIZE), 2);
        assert_eq!(leaf_tables(VirtAddr(base + SPAN - PAGE_SIZE), PAGE_SIZE), 1);
        assert_eq!(
            leaf_tables(VirtAddr(base + SPAN - PAGE_SIZE), 2 * PAGE_SIZE),
            2
        );
        assert_eq!(leaf_tables(VirtAddr(base + PAGE_SIZE), 3 * SPAN), 4);
        assert_eq!(leaf_tables(VirtAddr(usize::MAX - SPAN + 1), SPAN), 1);
    }

    #[test]
    fn backend_writes_and_clears_the_windows_own_entry() {
        let mut ptes = [0u64; 16];
        let base = VirtAddr(0xffff_c000_0000_0000);
        let pointer = ptes.as_mut_ptr();
        // SAFETY: `ptes` stands in for the region's entries and outlives `mmu`; only the
        // entry writes run (no invlpg on the host).
        let mmu = unsafe { X86Mmu::new(base, ptes.len(), pointer) };
        let window = Window {
            cpu: 1,
            slot: 1,
            va: base.add(10 * PAGE_SIZE),
            region_page: 10,
        };
        mmu.set_window_pte(
            window,
            PhysAddr(0x4_0000_0000),
            MemoryAttribute::Uncacheable,
        );
        assert_eq!(
            mmu.read_pte(window.va),
            window_pte(PhysAddr(0x4_0000_0000), MemoryAttribute::Uncacheable)
        );
        mmu.clear_window_pte(window);
        assert!(ptes.iter().all(|&pte| pte == 0));
    }
}
