//! The designs quickmap is measured against (DESIGN.md §6), written the way
//! FreeBSD writes them, with raw page-table entry writes:
//!
//! - [`GlobalWindow`]: amd64's high-memory path of `pmap_quick_enter_page`:
//!   ONE window for all CPUs under one spin lock (`qframe` / `qframe_mtx`):
//!   lock, write the entry, `invlpg`, use, clear the entry, unlock.
//! - [`ShootdownMap`]: `pmap_qenter` / `pmap_qremove`: map the page at a
//!   kernel address (here one per CPU), use it, clear the entry, and
//!   invalidate the address on every CPU with an IPI shootdown, because a
//!   shared kernel mapping may be cached in any CPU's TLB.
//!
//! - [`ShootdownMap::pair_broadcast`]: the same on arm64, as FreeBSD arm64's
//!   `pmap_qremove` does it: one broadcast `tlbi vale1is` + `dsb ish`, no IPI
//!   (only on architectures that have it: `BROADCAST_INVALIDATION`).
//!
//! Both live outside the 2 MiB-page span of the direct map, like quickmap's
//! windows, so an `invlpg` costs QEMU one page (DESIGN.md §5).

use core::ops::Range;

use crate::arch::quickmap_backend::{invalidate_page_local, window_pte};
use quickmap::VirtAddr;
use spin::Once;

use super::pages::touch;
use crate::arch::paging::{self, LARGE_PAGE_SIZE, PAGE_SIZE, SCRATCH_REGION, WINDOW_REGION};
use crate::arch::VirtAddr as ArchVirtAddr;
use crate::cpu::MAX_CPUS;
use crate::sync::SpinLock;
use crate::vm::page::VmPage;

/// The global window: a 2 MiB slot of the window region that quickmap's own
/// instance (slot 0) and the tests' extra instances (slots 2 and 4) leave alone.
const GLOBAL_WINDOW_VA: u64 = WINDOW_REGION.start + 8 * LARGE_PAGE_SIZE;

/// The shootdown variant's addresses: one page per CPU, each followed by an
/// unmapped page, 1 GiB into the scratch region (tests use its first pages).
const SHOOTDOWN_BASE: u64 = SCRATCH_REGION.start + (1 << 30);

/// One page-table entry and the address it maps.
struct Slot {
    va: usize,
    pte: *mut u64,
}

// SAFETY: the entry lies in a page table that is never freed, and the bench
// is its only user: the global window's slot is only touched under its lock,
// and each shootdown slot only by the one thread pinned to its CPU.
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

impl Slot {
    /// The (clear) entry of `va`, creating its page table if needed.
    fn new(va: u64) -> Slot {
        let leaf = paging::ensure_leaf_table(ArchVirtAddr::new(va))
            .unwrap_or_else(|error| panic!("bench: page table for {va:#x}: {error}"));
        let pte = leaf.entry_pointer(ArchVirtAddr::new(va)).cast::<u64>();
        // SAFETY: `entry_pointer` points at the live entry of `va`.
        let existing = unsafe { pte.read_volatile() };
        assert_eq!(existing, 0, "bench: {va:#x} is already mapped");
        Slot {
            va: va as usize,
            pte,
        }
    }

    /// Map `page` here (the entry is clear, so the TLB holds nothing for it).
    #[inline(always)]
    fn set(&self, page: &VmPage) {
        // SAFETY: `pte` is this slot's live entry (see `new`) and the caller
        // is its only user now (see the `Send` impl); the entry maps RAM the
        // caller holds, supervisor-only and non-executable.
        unsafe {
            self.pte
                .write_volatile(window_pte(page.phys_addr(), page.memory_attribute()))
        }
    }

    /// Clear the entry (the caller invalidates).
    #[inline(always)]
    fn clear(&self) {
        // SAFETY: as in `set`.
        unsafe { self.pte.write_volatile(0) }
    }

    fn range(&self) -> Range<ArchVirtAddr> {
        let start = ArchVirtAddr::new(self.va as u64);
        start..start + PAGE_SIZE
    }
}

/// FreeBSD amd64's `qframe` under `qframe_mtx`.
pub struct GlobalWindow {
    slot: SpinLock<Slot>,
}

static GLOBAL_WINDOW: Once<GlobalWindow> = Once::new();

impl GlobalWindow {
    /// The one global window (set up on first use).
    pub fn get() -> &'static GlobalWindow {
        GLOBAL_WINDOW.call_once(|| GlobalWindow {
            slot: SpinLock::new(Slot::new(GLOBAL_WINDOW_VA)),
        })
    }

    /// One pair: lock, map, `invlpg`, touch, clear, unlock. One lock, one
    /// invalidation, one entry written (and cleared).
    #[inline(always)]
    pub fn pair(&self, page: &VmPage) {
        let slot = self.slot.lock();
        slot.set(page);
        // The last user cleared the entry without invalidating (as FreeBSD
        // does); its translation may still be cached, so invalidate now.
        // SAFETY: kernel code runs at CPL 0 / EL1, and the window's
        // translation is global.
        unsafe { invalidate_page_local(VirtAddr(slot.va)) };
        touch(slot.va);
        slot.clear();
        drop(slot);
    }
}

/// `pmap_qenter`/`pmap_qremove` with one kernel page per CPU.
pub struct ShootdownMap {
    slots: [Slot; MAX_CPUS],
}

static SHOOTDOWN_MAP: Once<ShootdownMap> = Once::new();

impl ShootdownMap {
    /// The per-CPU pages (set up on first use, for every CPU the kernel supports).
    pub fn get() -> &'static ShootdownMap {
        SHOOTDOWN_MAP.call_once(|| ShootdownMap {
            slots: core::array::from_fn(|cpu| {
                Slot::new(SHOOTDOWN_BASE + 2 * PAGE_SIZE * cpu as u64)
            }),
        })
    }

    /// One pair on CPU `cpu` (the caller is pinned there): map, touch, clear,
    /// then invalidate on every CPU (one IPI to each other CPU, one lock for
    /// the cross-CPU call). Needs interrupts enabled.
    #[inline(always)]
    pub fn pair(&self, cpu: usize, page: &VmPage) {
        let slot = &self.slots[cpu];
        slot.set(page);
        touch(slot.va);
        slot.clear();
        crate::smp::shootdown(slot.range());
    }

    /// One pair on CPU `cpu` (the caller is pinned there) invalidated by the
    /// hardware's broadcast: map, touch, clear, `invalidate` (which drops the
    /// page from every CPU's TLB and waits for them, no IPI, no lock).
    ///
    /// # Safety
    ///
    /// `invalidate` is the architecture's `BROADCAST_INVALIDATION`.
    #[inline(always)]
    pub unsafe fn pair_broadcast(
        &self,
        cpu: usize,
        page: &VmPage,
        invalidate: unsafe fn(VirtAddr),
    ) {
        let slot = &self.slots[cpu];
        slot.set(page);
        touch(slot.va);
        slot.clear();
        // SAFETY: kernel code runs at EL1 and the slot's translation is
        // global: what the architecture's broadcast invalidation requires.
        unsafe { invalidate(VirtAddr(slot.va)) };
    }
}
