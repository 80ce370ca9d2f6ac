//! aarch64: window descriptors, the `MAIR_EL1` layout for the six memory attributes,
//! and local TLB maintenance (`tlbi vale1`, never its broadcast form).
//!
//! Everything here assumes what a kernel on arm64 usually runs with: the 4 KiB
//! translation granule for the kernel's half of the address space (`TCR_EL1.TG1`),
//! 48-bit output addresses without FEAT_LPA2's 52-bit descriptor format
//! (`TCR_EL1.DS == 0`), the window region in that half (translated through
//! `TTBR1_EL1` at EL1), and page tables in Inner Shareable write-back memory that the
//! table walker reads coherently (`TCR_EL1.SH1`, `IRGN1`, `ORGN1`).
//!
//! ## The descriptor of a window
//!
//! A window is one level-3 page descriptor (Arm ARM, DDI 0487, "VMSAv8-64 translation
//! table format descriptors", stage 1, 4 KiB granule):
//!
//! | bits | field | window | why |
//! |---|---|---|---|
//! | 1:0 | valid, page | `0b11` | a page (at level 3, `0b01` is reserved and faults) |
//! | 4:2 | AttrIndx | per attribute | the `MAIR_EL1` byte that gives the memory type (below) |
//! | 5 | NS | 0 | only meaningful in Secure state |
//! | 7:6 | AP\[2:1\] | `0b00` | read/write at EL1, no access at EL0 |
//! | 9:8 | SH | `0b11` | Inner Shareable (below) |
//! | 10 | AF | 1 | no Access flag fault on first use, no hardware write of the entry |
//! | 11 | nG | 0 | global (below) |
//! | 47:12 | output address | the page | [`PTE_ADDRESS_MASK`]; [`PHYS_LIMIT`] is 2^48 |
//! | 50 | GP | 0 | BTI guard: only meaningful for executable pages |
//! | 51 | DBM | 0 | hardware dirty state: the entry is writable by AP\[2\] already |
//! | 52 | Contiguous | 0 | a window is one page, never part of a 64 KiB run |
//! | 53 | PXN | 1 | never executable at EL1 |
//! | 54 | UXN | 1 | never executable at EL0 |
//! | 58:55, 63:59 | software, PBHA, ignored | 0 | |
//!
//! So a write-back window of the page at `0x4567_8000` is `0x0060_0000_4567_8703`.
//!
//! **Supervisor-only and never executable**, like the x86_64 backend's entries: a window
//! holds data for a moment and must never become a gadget for user code or a way to
//! execute a page's contents. With AP\[1\] clear, EL0 has no access, so `PSTATE.PAN`
//! never applies to a window either. **AF is preset** for the same reason x86_64 presets
//! accessed and dirty: without it the first access faults (or, with FEAT_HAFDBS, the
//! walker writes the entry back while the window is in use).
//!
//! **Shareability.** For Normal cacheable memory (write-back, write-through) SH is Inner
//! Shareable, as in the kernel's linear map and its page tables: aliases of one frame
//! should agree, since mismatched shareability of cacheable aliases is one of the Arm
//! ARM's "mismatched memory attributes" cases, which loses coherency. For Device memory,
//! and for Normal memory that is Inner and Outer Non-cacheable, the architecture ignores
//! SH and treats every access as Outer Shareable; those windows carry `0b11` too (one
//! template for all six attributes, as Linux's `PROT_DEVICE_*` do).
//!
//! **Global (nG = 0)**, unlike the x86_64 backend's entries, because on arm64 the
//! argument runs the other way:
//! - x86_64 gains from non-global entries because every CR3 write also drops them. TLB
//!   entries on arm64 are tagged by ASID and a write of `TTBR0_EL1` drops nothing, so a
//!   non-global window entry would stay, tagged with whatever ASID was current when it
//!   was walked.
//! - `tlbi vale1` drops a global entry whatever the ASID field of its operand holds (Arm
//!   ARM, TLBI VALE1: "Global TLB entries that match the VA value will be affected ...
//!   regardless of the value of the ASID field"), so `remove` needs no `mrs` of
//!   `TTBR0_EL1`/`TTBR1_EL1` for the current ASID, and it stays right when the ASID has
//!   changed since the walk: in [`Deferred`](crate::Deferred) mode a window's entry
//!   outlives context switches, and a non-global one could then be cached under any
//!   ASID.
//! - The window region is reached through `TTBR1_EL1`'s tables only, which are the same
//!   in every address space: "global" is simply true of it.
//!
//! The exception is a kernel that unmaps itself at EL0 (KPTI, for CPUs affected by
//! Meltdown, CVE-2017-5754), which makes all its mappings non-global so that no kernel
//! translation is usable under the user ASID. A [`Strict`](crate::Strict) window needs no
//! such care: it exists only between `enter` and `remove`, which run with preemption
//! disabled, and `remove` invalidates it before returning. A deferred window stays in the
//! TLB after `remove`, so such a kernel should use strict instances, or call
//! [`QuickMap::flush_local`](crate::QuickMap::flush_local) before returning to EL0.
//!
//! ## Memory attributes: the `MAIR_EL1` layout
//!
//! AttrIndx selects one byte of `MAIR_EL1`. quickmap expects the kernel to program
//! `MAIR_EL1` on every CPU with [`MAIR_EL1_VALUE`] (at least the bytes in
//! [`MAIR_EL1_QUICKMAP_BYTES`]: [`mair_is_compatible`] checks a value), one index per
//! attribute:
//!
//! | index | attribute | byte | memory type |
//! |---|---|---|---|
//! | 0 | write-back | `0xff` | Normal, inner and outer Write-Back non-transient, read- and write-allocate |
//! | 1 | write-through | `0xbb` | Normal, inner and outer Write-Through non-transient, read- and write-allocate |
//! | 2 | write-combining | `0x44` | Normal, inner and outer Non-cacheable |
//! | 3 | uncacheable | `0x00` | Device-nGnRnE |
//! | 4 | weak uncacheable (UC-) | `0x04` | Device-nGnRE |
//! | 5 | write-protected | `0x44` | Normal, inner and outer Non-cacheable |
//! | 6, 7 | the kernel's | `0x00` in [`MAIR_EL1_VALUE`] | (e.g. Normal Tagged for MTE) |
//!
//! Why each attribute gets the type it gets:
//! - **Write-back**: what Linux (`MT_NORMAL`) and FreeBSD (`VM_MEMATTR_WRITE_BACK`) map
//!   RAM with, so a window and the linear map of the same frame agree.
//! - **Write-through**: reads cached, writes go through to memory: `0xbb`, the byte
//!   FreeBSD (`VM_MEMATTR_WRITE_THROUGH`) and Linux (its former `MT_NORMAL_WT`) use.
//! - **Write-combining as Normal Non-cacheable**: x86 WC is uncached, lets writes be
//!   combined and delayed and reads be speculative; Normal Non-cacheable is uncached,
//!   and Normal memory's weak ordering allows exactly that gathering and speculation.
//!   This is Linux's `pgprot_writecombine` and `ioremap_wc`. FreeBSD instead aliases
//!   `VM_MEMATTR_WRITE_COMBINING` to write-through (`sys/arm64/include/vm.h`), which
//!   caches reads: a buffer that a device writes (a GPU's, a capture engine's) would then
//!   read back stale lines. A driver orders its write-combined stores before a doorbell
//!   with a barrier (`dsb st`), as it uses `sfence` on x86.
//! - **Uncacheable as Device-nGnRnE**: [`MemoryAttribute::Uncacheable`] promises strong
//!   ordering for device registers (x86 UC: no caching, no speculative access, no
//!   combining). Device-nGnRnE is the strongest arm64 type, Armv7's Strongly-ordered: no
//!   gathering, no reordering, no early write acknowledgement, and, like every Device
//!   type, no speculative data access (FreeBSD's `VM_MEMATTR_DEVICE_NP`, Linux's
//!   `ioremap_np`). FreeBSD's arm64 `VM_MEMATTR_UNCACHEABLE` is Normal Non-cacheable,
//!   which may be read speculatively: wrong for a register whose read has side effects,
//!   so quickmap does not follow it.
//! - **Weak uncacheable (UC-) as Device-nGnRE**: UC- is what an ordinary MMIO mapping
//!   gets on x86 (Linux's `ioremap`), and Device-nGnRE is what it gets on arm64 (Linux's
//!   `ioremap`, FreeBSD's `VM_MEMATTR_DEVICE`): the same ordering and no speculation, but
//!   a write may be acknowledged early by the interconnect (posted, as PCIe writes are
//!   anyway). UC-'s other half, that an MTRR may weaken it to WC, has no arm64
//!   counterpart (there are no MTRRs); keeping the stronger side costs no correctness.
//! - **Write-protected as Normal Non-cacheable, at an index of its own**: x86 WP caches
//!   reads, and a write goes to memory and *invalidates* the line, so a read after a
//!   write sees memory, not the value written (ROM shadows, flash that ignores or
//!   transforms writes). arm64 has no such type, and neither Linux nor FreeBSD defines
//!   it there. Write-through would keep the read caching but serve the written value
//!   from the cache: it breaks the one guarantee that sets WP apart from WT.
//!   Non-cacheable keeps every guarantee WP gives (writes reach memory, a read after a
//!   write sees memory) and loses only the read caching: speed, not correctness. Index 5
//!   has the same byte as index 2 so that a descriptor still says which attribute it was
//!   entered with ([`attribute_of`]), and a kernel that prefers the other trade-off
//!   changes one `MAIR_EL1` byte, not quickmap.
//!
//! Device windows fault on unaligned accesses, exclusives and `dc zva`. quickmap's byte
//! movers use naturally aligned volatile accesses only (see [`untyped`](crate::untyped)),
//! so they work there; code that takes a raw pointer into a device window (e.g. through
//! [`Mapping::as_slice`](crate::Mapping::as_slice)) must do likewise.
//!
//! ## Barriers: a CPU-local window
//!
//! `enter` ([`set_window_pte`](crate::Mmu::set_window_pte)):
//!
//! ```text
//! str   desc, [entry]   // invalid -> valid: no TLB maintenance, a TLB never holds a
//!                       // translation that faults
//! dsb   ishst           // the store is complete: the table walker observes it
//! isb                   // nothing after this was translated (or faulted) before it
//! ```
//!
//! `remove` ([`clear_window_pte`](crate::Mmu::clear_window_pte), then
//! [`invalidate_local`](crate::Mmu::invalidate_local)):
//!
//! ```text
//! str   xzr, [entry]
//! dsb   ishst           // the walker sees the invalid entry before the TLBI, so no walk
//!                       // after the TLBI can load the old one again
//! tlbi  vale1, x        // this CPU, last level, VA[55:12]; a global entry: any ASID
//! dsb   nsh             // the TLBI is complete, and so is every access that used
//!                       // the old translation
//! isb                   // nothing after this uses the old translation
//! ```
//!
//! A deferred instance's flush ([`invalidate_all_local`](crate::Mmu::invalidate_all_local)),
//! after clearing the entries of its free windows: `dsb ishst; tlbi vmalle1; dsb nsh;
//! isb`, which drops every stage-1 EL1&0 translation of this CPU (all ASIDs, global or
//! not, all levels): more than the window region, which the trait allows, for one
//! instruction instead of a loop.
//!
//! Why each barrier, and why in its domain:
//! - **The store barriers are `ishst`, although the window is this CPU's.** The Arm ARM
//!   lets a translation table walk observe an explicit write to the tables only after a
//!   DSB executed by the writing PE, and then to the extent that the tables'
//!   shareability attributes require; the walker counts as an observer of its own, and
//!   the tables are Inner Shareable. A `dsb nshst` completes the store for this PE's
//!   Non-shareable domain, which the architecture does not promise includes its walker.
//!   Linux's local flushes (`local_flush_tlb_all`, and the `local_flush_tlb_page` of a
//!   2025 patch series) do use `dsb nshst` there, on the reading that it does; the Inner
//!   Shareable form needs no such reading and costs about the same, since the store must
//!   reach the coherent cache the walker reads either way. On the `enter` side it is Linux's `set_pte` for a
//!   valid kernel entry, `dsb ishst; isb` (commit 7f0b1bf04511, "arm64: Fix barriers used
//!   for page table modifications").
//! - **The invalidation is the local form, `tlbi vale1`, not `tlbi vale1is`.** The
//!   window's address is only ever used on this CPU: the thread that holds it is pinned
//!   from `enter` to `remove`, and every other CPU uses windows of its own. Another CPU
//!   may still hold a translation of it, since the architecture lets a PE cache any valid
//!   entry its tables reach, speculatively and at any time; but nothing on that CPU
//!   accesses this CPU's window addresses, so it never uses it (the same reasoning lets
//!   x86 `invlpg` stay local, and Linux's `kmap_local` and FreeBSD's per-CPU windows
//!   flush locally). The broadcast form sends a DVM message to every PE of the Inner
//!   Shareable domain and its `dsb ish` waits for all of them to acknowledge: the cost
//!   per-CPU windows exist to avoid. The last-level form (`vale1`, not `vae1`) suffices
//!   because only the level-3 entry ever changes; the table entries above it are set up
//!   once ([`Aarch64Mmu::new`]'s contract), so no walk cache needs dropping. The operand
//!   leaves TTL (bits 47:44) zero, "no level hint", which is right with or without
//!   FEAT_TTL.
//! - **`dsb nsh` after the TLBI** completes TLB maintenance that applies to this PE only
//!   (Arm ARM, completion of TLB maintenance instructions; the broadcast form would need
//!   `dsb ish`). It is the full DSB, not `nshst`: only the full type waits for TLB
//!   maintenance to complete, and with it for the accesses made through the old
//!   translation.
//! - **`isb` after each sequence.** Without Enhanced Translation Synchronization
//!   (FEAT_ETS and its successors in later issues of the Arm ARM), a DSB alone does not
//!   order later instructions' translation: an access after `enter`'s DSB may already
//!   have walked, found the entry invalid and recorded a fault to take (the spurious
//!   fault Linux's `set_pte` ISB exists for), and an access after `remove`'s DSB may
//!   still use the old translation until a context synchronization event. quickmap does
//!   not probe for that feature, so it always synchronizes.
//! - **Interrupts and hypervisors.** An interrupt between a store and its barrier is
//!   harmless: exception entry and return are context synchronization events, and the
//!   handler's own windows are other windows. Under a hypervisor that moves virtual CPUs
//!   between physical ones, `HCR_EL2.FB` and `HCR_EL2.BSU` upgrade the local TLBI and
//!   barriers to their Inner Shareable forms; nothing for quickmap to do.
//!
//! Each entry is written whole by one aligned 64-bit store, single-copy atomic for the
//! walker, so no walk on any CPU ever sees half a descriptor.
//!
//! ## Not covered
//!
//! The 16 KiB and 64 KiB granules, 52-bit output addresses (FEAT_LPA2 moves bits 9:8 to
//! the address and takes shareability from `TCR_EL1`), and a kernel running at EL2 with
//! `HCR_EL2.E2H` (VHE): each needs a descriptor or an invalidation of its own.

use super::entry_array::EntryArray;
use crate::addr::{PhysAddr, VirtAddr};
#[cfg(target_arch = "aarch64")]
use crate::mmu::Mmu;
#[cfg(any(target_arch = "aarch64", test))]
use crate::mmu::Window;
use crate::page::MemoryAttribute;

/// Valid: bit 0.
pub const PTE_VALID: u64 = 1 << 0;
/// Descriptor type, bit 1: at level 3, set for a page (with [`PTE_VALID`], `0b11`).
pub const PTE_PAGE: u64 = 1 << 1;
/// AttrIndx, bits 4:2: which `MAIR_EL1` byte gives the memory type.
pub const PTE_ATTR_INDEX_MASK: u64 = 0b111 << PTE_ATTR_INDEX_SHIFT;
/// The position of AttrIndx's lowest bit.
pub const PTE_ATTR_INDEX_SHIFT: u32 = 2;
/// Non-secure, bit 5 (never set on windows: only meaningful in Secure state).
pub const PTE_NS: u64 = 1 << 5;
/// AP\[1\], bit 6: accessible from EL0 (never set on windows).
pub const PTE_AP_EL0: u64 = 1 << 6;
/// AP\[2\], bit 7: read-only (never set on windows).
pub const PTE_AP_READ_ONLY: u64 = 1 << 7;
/// SH, bits 9:8: shareability.
pub const PTE_SH_MASK: u64 = 0b11 << 8;
/// SH = `0b11`: Inner Shareable.
pub const PTE_SH_INNER: u64 = 0b11 << 8;
/// Access flag, bit 10.
pub const PTE_AF: u64 = 1 << 10;
/// Not global, bit 11: the entry is tagged with the ASID (never set on windows; see the
/// module documentation).
pub const PTE_NG: u64 = 1 << 11;
/// Dirty bit modifier, bit 51 (never set on windows).
pub const PTE_DBM: u64 = 1 << 51;
/// Contiguous hint, bit 52 (never set on windows).
pub const PTE_CONTIGUOUS: u64 = 1 << 52;
/// Privileged execute-never, bit 53.
pub const PTE_PXN: u64 = 1 << 53;
/// Unprivileged execute-never, bit 54.
pub const PTE_UXN: u64 = 1 << 54;
/// Bits 47:12: the page's physical address (48-bit output addresses, 4 KiB granule).
pub const PTE_ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

/// The first physical address a window descriptor cannot hold: 2^48. A CPU whose
/// `ID_AA64MMFR0_EL1.PARange` is smaller faults (Address size fault) below it already;
/// a kernel configures its own physical limit accordingly.
pub const PHYS_LIMIT: PhysAddr = PhysAddr(1 << 48);

/// `MAIR_EL1` attribute encodings (Arm ARM, `MAIR_EL1.Attr<n>`). For Normal memory the
/// high nibble is the outer policy and the low nibble the inner one: `0b0100`
/// Non-cacheable, `0b10RW` Write-Through non-transient, `0b11RW` Write-Back
/// non-transient (R, W: read-, write-allocate). `0b0000dd00` is Device memory, `dd`
/// from nGnRnE (`0b00`) to GRE (`0b11`).
mod mair_attr {
    pub const NORMAL_WRITE_BACK: u64 = 0xff;
    pub const NORMAL_WRITE_THROUGH: u64 = 0xbb;
    pub const NORMAL_NON_CACHEABLE: u64 = 0x44;
    pub const DEVICE_NGNRNE: u64 = 0x00;
    pub const DEVICE_NGNRE: u64 = 0x04;
}

/// The `MAIR_EL1` index (AttrIndx) that selects `attribute` under [`MAIR_EL1_VALUE`].
#[inline]
pub const fn attr_index(attribute: MemoryAttribute) -> u64 {
    match attribute {
        MemoryAttribute::WriteBack => 0,
        MemoryAttribute::WriteThrough => 1,
        MemoryAttribute::WriteCombining => 2,
        MemoryAttribute::Uncacheable => 3,
        MemoryAttribute::WeakUncacheable => 4,
        MemoryAttribute::WriteProtected => 5,
    }
}

/// The `MAIR_EL1` byte that gives `attribute` its memory type (the module
/// documentation says why).
const fn mair_attr_of(attribute: MemoryAttribute) -> u64 {
    match attribute {
        MemoryAttribute::WriteBack => mair_attr::NORMAL_WRITE_BACK,
        MemoryAttribute::WriteThrough => mair_attr::NORMAL_WRITE_THROUGH,
        MemoryAttribute::WriteCombining | MemoryAttribute::WriteProtected => {
            mair_attr::NORMAL_NON_CACHEABLE
        }
        MemoryAttribute::Uncacheable => mair_attr::DEVICE_NGNRNE,
        MemoryAttribute::WeakUncacheable => mair_attr::DEVICE_NGNRE,
    }
}

/// The value the kernel writes to `MAIR_EL1` on every CPU, before it enables the MMU
/// (see the module documentation for the layout). Bytes 6 and 7 are Device-nGnRnE
/// here, the strictest type, and quickmap never uses them: a kernel may put its own
/// types there.
pub const MAIR_EL1_VALUE: u64 = {
    let mut value = 0;
    let mut index = 0;
    while index < MemoryAttribute::ALL.len() {
        let attribute = MemoryAttribute::ALL[index];
        value |= mair_attr_of(attribute) << (8 * attr_index(attribute));
        index += 1;
    }
    value
};

/// The bytes of `MAIR_EL1` that quickmap's descriptors select: the ones a kernel's own
/// value must share with [`MAIR_EL1_VALUE`].
pub const MAIR_EL1_QUICKMAP_BYTES: u64 = {
    let mut mask = 0;
    let mut index = 0;
    while index < MemoryAttribute::ALL.len() {
        mask |= 0xff << (8 * attr_index(MemoryAttribute::ALL[index]));
        index += 1;
    }
    mask
};

/// Whether `mair`, a value of `MAIR_EL1`, gives every attribute the memory type
/// quickmap's descriptors expect (bytes outside [`MAIR_EL1_QUICKMAP_BYTES`] are the
/// kernel's).
pub const fn mair_is_compatible(mair: u64) -> bool {
    mair & MAIR_EL1_QUICKMAP_BYTES == MAIR_EL1_VALUE & MAIR_EL1_QUICKMAP_BYTES
}

/// The memory attribute a window descriptor was entered with, read back from its
/// AttrIndx; `None` for the indices quickmap leaves to the kernel.
pub const fn attribute_of(pte: u64) -> Option<MemoryAttribute> {
    match (pte & PTE_ATTR_INDEX_MASK) >> PTE_ATTR_INDEX_SHIFT {
        0 => Some(MemoryAttribute::WriteBack),
        1 => Some(MemoryAttribute::WriteThrough),
        2 => Some(MemoryAttribute::WriteCombining),
        3 => Some(MemoryAttribute::Uncacheable),
        4 => Some(MemoryAttribute::WeakUncacheable),
        5 => Some(MemoryAttribute::WriteProtected),
        _ => None,
    }
}

/// The level-3 descriptor of a window mapping `pa` with `attribute`.
///
/// Bits of `pa` outside 47:12 are dropped, so no address can set an attribute bit (a
/// stray bit 52 would be the contiguous hint). quickmap never passes such an address:
/// its pages are page-aligned and below a physical limit that is at most
/// [`PHYS_LIMIT`].
///
/// ```
/// use quickmap::arch::aarch64::*;
/// use quickmap::{MemoryAttribute, PhysAddr};
/// let pte = window_pte(PhysAddr(0x4567_8000), MemoryAttribute::WriteBack);
/// assert_eq!(pte, 0x0060_0000_4567_8703);
/// assert_eq!(pte & PTE_ADDRESS_MASK, 0x4567_8000);
/// assert_eq!(pte & (PTE_AP_EL0 | PTE_AP_READ_ONLY | PTE_NG), 0);
/// assert_eq!(pte & (PTE_PXN | PTE_UXN), PTE_PXN | PTE_UXN);
/// assert_eq!(attribute_of(pte), Some(MemoryAttribute::WriteBack));
/// ```
#[inline]
pub const fn window_pte(pa: PhysAddr, attribute: MemoryAttribute) -> u64 {
    (pa.0 & PTE_ADDRESS_MASK) | WINDOW_PTE_FLAGS[attribute as usize]
}

/// Every bit of a window descriptor but the address, per attribute: one table lookup on
/// the enter path instead of assembling the flags.
const WINDOW_PTE_FLAGS: [u64; MemoryAttribute::ALL.len()] = {
    let mut flags = [0; MemoryAttribute::ALL.len()];
    let mut index = 0;
    while index < flags.len() {
        let attribute = MemoryAttribute::ALL[index];
        flags[attribute as usize] = PTE_VALID
            | PTE_PAGE
            | attr_index(attribute) << PTE_ATTR_INDEX_SHIFT
            | PTE_SH_INNER
            | PTE_AF
            | PTE_PXN
            | PTE_UXN;
        index += 1;
    }
    flags
};

/// VA\[55:12\] of a TLBI-by-VA operand: bits 43:0.
const TLBI_VA_MASK: u64 = (1 << 44) - 1;

/// The operand of `tlbi vale1` for the page at `va`: VA\[55:12\] in bits 43:0, TTL
/// (bits 47:44) zero for "no level hint", ASID (bits 63:48) zero, which a global entry
/// ignores. As Linux's `__TLBI_VADDR(va, 0)`.
#[inline]
pub const fn tlbi_va_operand(va: VirtAddr) -> u64 {
    (va.0 as u64 >> 12) & TLBI_VA_MASK
}

/// Make this CPU's earlier page-table stores visible to its table walker, and translate
/// nothing after this before they are: `dsb ishst; isb` (the module documentation says
/// why each).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub fn publish_entries() {
    // SAFETY: two barriers: they wait and resynchronize, and change no register, flag or
    // memory. The asm is not `nomem`, so the compiler keeps every memory access on its
    // side of it: the entry store before, the accesses through the window after.
    unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
}

/// Drop this CPU's translation of the page at `va`, once the page-table stores before
/// it are visible to the walker: `dsb ishst; tlbi vale1, <va>; dsb nsh; isb`.
///
/// Local and last-level only: it drops global entries and those of ASID 0, from the
/// final level of the walk, on this CPU (see the module documentation).
///
/// # Safety
///
/// 1. Must run at EL1 (`tlbi` is UNDEFINED at EL0), in the EL1&0 translation regime
///    (not at EL2 with `HCR_EL2.{E2H, TGE} == {1, 1}`, where it acts on EL2&0).
/// 2. The translation to drop is global (window entries are: [`PTE_NG`] is clear).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub unsafe fn tlbi_vale1_local(va: VirtAddr) {
    // SAFETY: the caller runs at EL1 (promise 1). The sequence only waits for stores,
    // drops cached translations, which the walker reloads from the tables when needed,
    // and resynchronizes; not `nomem`, so no memory access moves across it.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi vale1, {operand}",
            "dsb nsh",
            "isb",
            operand = in(reg) tlbi_va_operand(va),
            options(nostack, preserves_flags)
        )
    };
}

/// Drop every stage-1 EL1&0 translation this CPU caches (all ASIDs, global or not, all
/// levels, current VMID), once the page-table stores before it are visible to the
/// walker: `dsb ishst; tlbi vmalle1; dsb nsh; isb`.
///
/// # Safety
///
/// Must run at EL1 (`tlbi` is UNDEFINED at EL0), in the EL1&0 translation regime.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub unsafe fn tlbi_vmalle1_local() {
    // SAFETY: the caller runs at EL1. Dropping translations is always allowed: the
    // walker reloads them from the tables when needed; not `nomem`, so no memory access
    // moves across it.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// The aarch64 window backend: the window region's level-3 descriptors form one array.
///
/// The kernel allocates the page tables of the region once at boot and keeps them
/// forever. One level-3 table (512 descriptors, 2 MiB) holds the region of 64 CPUs with
/// 4 guarded windows each ([`WindowLayout::region_pages`](crate::WindowLayout::region_pages)
/// counts them), so the descriptors are contiguous. Its [`Mmu` implementation](crate::Mmu)
/// exists on aarch64 only; the encodings above build and are tested
/// everywhere.
pub struct Aarch64Mmu {
    entries: EntryArray,
}

// SAFETY: every CPU writes only the descriptors of its own windows (quickmap's per-CPU
// windows), with volatile single-word stores the walker reads single-copy atomically.
unsafe impl Sync for Aarch64Mmu {}
// SAFETY: as above; the pointer names page tables that live forever.
unsafe impl Send for Aarch64Mmu {}

impl Aarch64Mmu {
    /// A backend for the `region_pages` pages of windows (and guard pages) from
    /// `region_base`.
    ///
    /// # Safety
    ///
    /// 1. `ptes` points to the live, writable level-3 descriptors that translate
    ///    `region_base .. region_base + region_pages * PAGE_SIZE`, in order, through
    ///    `TTBR1_EL1` on every CPU, for as long as the backend lives; the table
    ///    descriptors above them do not change meanwhile (only last-level entries are
    ///    ever invalidated), and no block or contiguous mapping covers the region;
    /// 2. nothing but quickmap writes those descriptors while it runs, and all are
    ///    invalid; and `region_base` is the `window_base` of the quickmap that uses the
    ///    backend (its [`Window::region_page`](crate::Window::region_page)s index this
    ///    array);
    /// 3. on every CPU, `MAIR_EL1` holds [`MAIR_EL1_VALUE`] in the bytes of
    ///    [`MAIR_EL1_QUICKMAP_BYTES`] ([`mair_is_compatible`]), `TCR_EL1.TG1` selects the
    ///    4 KiB granule, `TCR_EL1.DS` is 0, and `TCR_EL1.{SH1, IRGN1, ORGN1}` make the
    ///    walks Inner Shareable and write-back cacheable, coherent with the stores that
    ///    write the descriptors;
    /// 4. the kernel runs at EL1, where its `tlbi` instructions are defined.
    pub const unsafe fn new(
        region_base: VirtAddr,
        region_pages: usize,
        ptes: *mut u64,
    ) -> Aarch64Mmu {
        Aarch64Mmu {
            entries: EntryArray::new(region_base, region_pages, ptes),
        }
    }

    /// The descriptor of the window at `va`, e.g. for a test that checks its bits.
    pub fn read_pte(&self, va: VirtAddr) -> u64 {
        // SAFETY: `entry_at` checked that `va` is in the region, whose live descriptors
        // form the array (constructor's first promise).
        unsafe { self.entries.entry_at(va, "aarch64").read_volatile() }
    }

    /// The store half of `set_window_pte`: the descriptor, without the barrier that
    /// publishes it (so that the host tests can run it).
    #[cfg(any(target_arch = "aarch64", test))]
    #[inline]
    fn store_entry(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        debug_assert!(
            pa.0 & !PTE_ADDRESS_MASK == 0,
            "quickmap: {pa} is not a page address a level-3 descriptor holds (bits 47:12)"
        );
        // `pa` is page-aligned and below `PHYS_LIMIT` (the trait's contract), so it
        // needs no masking to fit the address bits.
        let entry = pa.0 | WINDOW_PTE_FLAGS[attribute as usize];
        // SAFETY: the descriptor belongs to this CPU's claimed window and is invalid;
        // one aligned 64-bit store, which the walker reads single-copy atomically.
        unsafe {
            self.entries
                .entry(window.region_page, "aarch64")
                .write_volatile(entry)
        };
    }

    /// The store half of `clear_window_pte`: an invalid descriptor. Its barrier comes
    /// with the invalidation that follows.
    #[cfg(any(target_arch = "aarch64", test))]
    #[inline]
    fn clear_entry(&self, window: Window) {
        // SAFETY: as above; the window is about to be released.
        unsafe {
            self.entries
                .entry(window.region_page, "aarch64")
                .write_volatile(0)
        };
    }
}

// SAFETY: descriptors are written whole with volatile stores while the window is claimed
// by the calling CPU (promise 1), published to the walker before any access through the
// window, and invalidated by the barrier, `tlbi vale1` or `tlbi vmalle1`, and completion
// sequences of the module documentation; the kernel runs at EL1 (promise 4).
#[cfg(target_arch = "aarch64")]
unsafe impl Mmu for Aarch64Mmu {
    /// Bits 47:12 of a descriptor hold the page: 48-bit output addresses.
    const PHYS_LIMIT: PhysAddr = PHYS_LIMIT;

    #[inline]
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        self.store_entry(window, pa, attribute);
        publish_entries();
    }

    #[inline]
    fn clear_window_pte(&self, window: Window) {
        self.clear_entry(window);
    }

    #[inline]
    fn invalidate_local(&self, va: VirtAddr) {
        // SAFETY: quickmap runs in the kernel, at EL1 (promise 4), and window entries
        // are global.
        unsafe { tlbi_vale1_local(va) }
    }

    #[inline]
    fn invalidate_all_local(&self) {
        // SAFETY: quickmap runs in the kernel, at EL1 (promise 4).
        unsafe { tlbi_vmalle1_local() }
    }
}

#[cfg(test)]
mod tests {
    //! The expected values are written out by hand from the Arm ARM's bit positions,
    //! never computed from this module's constants, so that a wrong constant fails.

    use super::*;
    use crate::addr::PAGE_SIZE;

    /// Hand-written AttrIndx and `MAIR_EL1` byte per attribute (the module
    /// documentation's table).
    const EXPECTED: [(MemoryAttribute, u64, u64); 6] = [
        (MemoryAttribute::WriteBack, 0, 0xff),
        (MemoryAttribute::WriteThrough, 1, 0xbb),
        (MemoryAttribute::WriteCombining, 2, 0x44),
        (MemoryAttribute::Uncacheable, 3, 0x00),
        (MemoryAttribute::WeakUncacheable, 4, 0x04),
        (MemoryAttribute::WriteProtected, 5, 0x44),
    ];

    #[test]
    fn descriptors_are_the_hand_computed_literals() {
        // 0x703 = valid|page 0b11, SH 0b11 << 8, AF 1 << 10; 0x0060_.. = PXN 1 << 53 |
        // UXN 1 << 54; AttrIndx << 2 adds 0x0, 0x4, 0x8, 0xc, 0x10, 0x14.
        let pa = PhysAddr(0x4567_8000);
        let cases = [
            (MemoryAttribute::WriteBack, 0x0060_0000_4567_8703),
            (MemoryAttribute::WriteThrough, 0x0060_0000_4567_8707),
            (MemoryAttribute::WriteCombining, 0x0060_0000_4567_870b),
            (MemoryAttribute::Uncacheable, 0x0060_0000_4567_870f),
            (MemoryAttribute::WeakUncacheable, 0x0060_0000_4567_8713),
            (MemoryAttribute::WriteProtected, 0x0060_0000_4567_8717),
        ];
        for (attribute, expected) in cases {
            assert_eq!(
                window_pte(pa, attribute),
                expected,
                "{attribute:?}: {:#018x}",
                window_pte(pa, attribute)
            );
        }
    }

    #[test]
    fn every_field_is_where_the_arm_arm_puts_it() {
        let pa = 0x0000_8765_4321_0000u64;
        for (attribute, index, _) in EXPECTED {
            let pte = window_pte(PhysAddr(pa), attribute);
            assert_eq!(pte & 0b11, 0b11, "{attribute:?}: valid page descriptor");
            assert_eq!((pte >> 2) & 0b111, index, "{attribute:?}: AttrIndx[4:2]");
            assert_eq!((pte >> 5) & 1, 0, "{attribute:?}: NS");
            assert_eq!(
                (pte >> 6) & 0b11,
                0b00,
                "{attribute:?}: AP[2:1], EL1 RW only"
            );
            assert_eq!(
                (pte >> 8) & 0b11,
                0b11,
                "{attribute:?}: SH, Inner Shareable"
            );
            assert_eq!((pte >> 10) & 1, 1, "{attribute:?}: AF");
            assert_eq!((pte >> 11) & 1, 0, "{attribute:?}: nG, global");
            assert_eq!(
                (pte >> 12) & ((1 << 36) - 1),
                pa >> 12,
                "{attribute:?}: OA[47:12]"
            );
            assert_eq!((pte >> 48) & 0b111, 0, "{attribute:?}: RES0 / GP");
            assert_eq!((pte >> 51) & 1, 0, "{attribute:?}: DBM");
            assert_eq!((pte >> 52) & 1, 0, "{attribute:?}: Contiguous");
            assert_eq!((pte >> 53) & 1, 1, "{attribute:?}: PXN");
            assert_eq!((pte >> 54) & 1, 1, "{attribute:?}: UXN");
            assert_eq!(pte >> 55, 0, "{attribute:?}: software, PBHA, ignored");
        }
    }

    #[test]
    fn bit_constants_are_the_arm_arms_positions() {
        assert_eq!(PTE_VALID, 0x1);
        assert_eq!(PTE_PAGE, 0x2);
        assert_eq!(PTE_ATTR_INDEX_SHIFT, 2);
        assert_eq!(PTE_ATTR_INDEX_MASK, 0x1c);
        assert_eq!(PTE_NS, 0x20);
        assert_eq!(PTE_AP_EL0, 0x40);
        assert_eq!(PTE_AP_READ_ONLY, 0x80);
        assert_eq!(PTE_SH_MASK, 0x300);
        assert_eq!(PTE_SH_INNER, 0x300);
        assert_eq!(PTE_AF, 0x400);
        assert_eq!(PTE_NG, 0x800);
        assert_eq!(PTE_DBM, 0x0008_0000_0000_0000);
        assert_eq!(PTE_CONTIGUOUS, 0x0010_0000_0000_0000);
        assert_eq!(PTE_PXN, 0x0020_0000_0000_0000);
        assert_eq!(PTE_UXN, 0x0040_0000_0000_0000);
        assert_eq!(PTE_ADDRESS_MASK, 0x0000_ffff_ffff_f000);
    }

    #[test]
    fn the_output_address_keeps_bits_47_to_12_and_drops_the_rest() {
        let wb = MemoryAttribute::WriteBack;
        // The highest page the descriptor holds, and the limit just above it.
        assert_eq!(PHYS_LIMIT, PhysAddr(0x0001_0000_0000_0000));
        assert_eq!(
            window_pte(PhysAddr(0x0000_ffff_ffff_f000), wb),
            0x0060_ffff_ffff_f703
        );
        assert_eq!(
            window_pte(PhysAddr(0x0000_8000_0000_0000), wb),
            0x0060_8000_0000_0703
        );
        // Bit 48 and above never reach the attribute bits (52 would be the contiguous
        // hint, 51 DBM), nor do the low 12 bits reach AttrIndx, AP or nG.
        assert_eq!(
            window_pte(PhysAddr(0x0001_0000_0000_0000), wb),
            0x0060_0000_0000_0703
        );
        assert_eq!(
            window_pte(PhysAddr(0xff9f_0000_0000_1000), wb),
            0x0060_0000_0000_1703
        );
        assert_eq!(
            window_pte(PhysAddr(0x0000_0000_1234_5fff), wb),
            0x0060_0000_1234_5703
        );
    }

    #[test]
    fn mair_is_the_documented_layout() {
        // Bytes from index 7 down to 0: 00 00 44 04 00 44 bb ff.
        assert_eq!(MAIR_EL1_VALUE, 0x0000_4404_0044_bbff);
        assert_eq!(MAIR_EL1_QUICKMAP_BYTES, 0x0000_ffff_ffff_ffff);
        for (attribute, index, byte) in EXPECTED {
            assert_eq!(attr_index(attribute), index, "{attribute:?}");
            assert_eq!(
                (MAIR_EL1_VALUE >> (8 * index)) & 0xff,
                byte,
                "{attribute:?} selects the wrong MAIR_EL1 byte"
            );
        }
    }

    /// The memory type a `MAIR_EL1` byte encodes, decoded as the Arm ARM's field
    /// description reads (independently of the byte literals above).
    #[derive(Debug, PartialEq)]
    enum MemoryType {
        /// Device, with the `dd` field: 0 nGnRnE, 1 nGnRE, 2 nGRE, 3 GRE.
        Device(u64),
        /// Normal, the same policy inner and outer.
        Normal(Policy),
    }

    #[derive(Debug, PartialEq)]
    enum Policy {
        NonCacheable,
        WriteThroughNonTransient,
        WriteBackNonTransient,
        Other(u64),
    }

    fn decode(byte: u64) -> MemoryType {
        let (outer, inner) = (byte >> 4, byte & 0xf);
        if outer == 0 {
            assert_eq!(byte & 0b11, 0, "{byte:#04x}: Device with nonzero bits 1:0");
            return MemoryType::Device(byte >> 2);
        }
        assert_eq!(outer, inner, "{byte:#04x}: inner and outer policies differ");
        MemoryType::Normal(match inner {
            0b0100 => Policy::NonCacheable,
            0b1000..=0b1011 => Policy::WriteThroughNonTransient,
            0b1100..=0b1111 => Policy::WriteBackNonTransient,
            other => Policy::Other(other),
        })
    }

    #[test]
    fn each_attribute_gets_the_memory_type_the_module_documents() {
        for attribute in MemoryAttribute::ALL {
            let byte = (MAIR_EL1_VALUE >> (8 * attr_index(attribute))) & 0xff;
            let expected = match attribute {
                MemoryAttribute::WriteBack => MemoryType::Normal(Policy::WriteBackNonTransient),
                MemoryAttribute::WriteThrough => {
                    MemoryType::Normal(Policy::WriteThroughNonTransient)
                }
                MemoryAttribute::WriteCombining | MemoryAttribute::WriteProtected => {
                    MemoryType::Normal(Policy::NonCacheable)
                }
                MemoryAttribute::Uncacheable => MemoryType::Device(0b00),
                MemoryAttribute::WeakUncacheable => MemoryType::Device(0b01),
            };
            assert_eq!(decode(byte), expected, "{attribute:?}");
        }
        // Read- and write-allocate for the cacheable types.
        assert_eq!(
            (MAIR_EL1_VALUE >> (8 * attr_index(MemoryAttribute::WriteBack))) & 0b11,
            0b11
        );
        assert_eq!(
            (MAIR_EL1_VALUE >> (8 * attr_index(MemoryAttribute::WriteThrough))) & 0b11,
            0b11
        );
    }

    #[test]
    fn every_attribute_round_trips_through_its_descriptor() {
        for attribute in MemoryAttribute::ALL {
            let pte = window_pte(PhysAddr(0x7000), attribute);
            assert_eq!(attribute_of(pte), Some(attribute), "{attribute:?}");
        }
        // The kernel's indices are not quickmap's.
        assert_eq!(attribute_of(0x0060_0000_0000_7703 | 6 << 2), None);
        assert_eq!(attribute_of(0x0060_0000_0000_7703 | 7 << 2), None);
    }

    #[test]
    fn a_kernel_may_use_bytes_6_and_7_of_mair_but_no_other() {
        assert!(mair_is_compatible(MAIR_EL1_VALUE));
        // Normal Tagged (MTE) in byte 6, Normal Non-cacheable in byte 7.
        assert!(mair_is_compatible(0x44f0_4404_0044_bbff));
        // FreeBSD's layout (nGnRnE, NC, WB, WT, nGnRE from index 0) and Linux's
        // (WB, Tagged, NC, nGnRnE, nGnRE) are not quickmap's.
        assert!(!mair_is_compatible(0x0000_0004_bbff_4400));
        assert!(!mair_is_compatible(0x0000_0004_0044_f0ff));
        // One byte off, anywhere in 0..=5.
        for index in 0..6 {
            assert!(
                !mair_is_compatible(MAIR_EL1_VALUE ^ 1 << (8 * index)),
                "{index}"
            );
        }
    }

    #[test]
    fn tlbi_operand_is_va_55_to_12_with_no_asid_and_no_level_hint() {
        // 0xffff_8000_1234_5000 >> 12 = 0xf_fff8_0001_2345; bits 43:0 of it.
        assert_eq!(
            tlbi_va_operand(VirtAddr(0xffff_8000_1234_5000)),
            0x0000_0ff8_0001_2345
        );
        assert_eq!(
            tlbi_va_operand(VirtAddr(0xffff_8000_1234_5fff)),
            0x0000_0ff8_0001_2345
        );
        assert_eq!(
            tlbi_va_operand(VirtAddr(0xffff_ffff_ffff_f000)),
            0x0000_0fff_ffff_ffff
        );
        assert_eq!(tlbi_va_operand(VirtAddr(0x1000)), 0x1);
    }

    #[test]
    fn backend_writes_and_clears_the_windows_own_entry() {
        let mut ptes = [0u64; 16];
        let base = VirtAddr(0xffff_c000_0000_0000);
        let pointer = ptes.as_mut_ptr();
        // SAFETY: `ptes` stands in for the region's descriptors and outlives `mmu`; only
        // the stores run (the barriers and TLBIs exist on aarch64 only).
        let mmu = unsafe { Aarch64Mmu::new(base, ptes.len(), pointer) };
        let window = Window {
            cpu: 1,
            slot: 1,
            va: base.add(10 * PAGE_SIZE),
            region_page: 10,
        };
        mmu.store_entry(
            window,
            PhysAddr(0x4_0000_0000),
            MemoryAttribute::Uncacheable,
        );
        assert_eq!(mmu.read_pte(window.va), 0x0060_0004_0000_070f);
        assert_eq!(mmu.read_pte(base.add(9 * PAGE_SIZE)), 0);
        assert_eq!(mmu.read_pte(base.add(11 * PAGE_SIZE)), 0);
        mmu.clear_entry(window);
        assert!(ptes.iter().all(|&pte| pte == 0));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "is not a page address a level-3 descriptor holds")]
    fn backend_refuses_an_address_beyond_48_bits_in_debug_builds() {
        let mut ptes = [0u64; 2];
        let pointer = ptes.as_mut_ptr();
        // SAFETY: as above.
        let mmu = unsafe { Aarch64Mmu::new(VirtAddr(0xffff_c000_0000_0000), 2, pointer) };
        let window = Window {
            cpu: 0,
            slot: 0,
            va: VirtAddr(0xffff_c000_0000_0000),
            region_page: 0,
        };
        mmu.store_entry(window, PHYS_LIMIT, MemoryAttribute::WriteBack);
    }
}
