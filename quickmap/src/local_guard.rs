//! The guard of a local mapping: [`LocalMapping`], which removes itself.

use core::fmt;
use core::marker::PhantomData;

use crate::access::{copy_mapped_page, page_accessors};
use crate::addr::VirtAddr;
use crate::local::{LocalHeld, LocalPlatform, LocalQuickMap};
use crate::mmu::Mmu;

/// A live local mapping of one held page, made by [`LocalQuickMap::map`]; dropping it
/// removes the mapping (Linux's `kunmap_local`).
///
/// - It borrows the page, so the page stays held while mapped.
/// - The thread that made it may be preempted and may sleep while it lives; it stays on
///   its CPU meanwhile, and the address stays valid for that thread only.
/// - It is neither `Send` nor `Sync`: the slot belongs to the thread that made it (a
///   `remove` by another thread is a type error here; the unsafe
///   [`LocalQuickMap::remove`] checks it at run time).
/// - Guards may be dropped in any order: a thread's slots are not a stack (Linux's
///   `kunmap_local` must be called in reverse order).
/// - Byte access copies in and out with the accessors of [`Mapping`](crate::Mapping)
///   (`read`, `write`, `fill`, `zero`, `compare`, the integer and, with the feature
///   `zerocopy`, the object accessors), each checked against the page
///   (`quickmap: access outside the page`).
#[must_use = "dropping the local mapping removes it at once"]
pub struct LocalMapping<'q, 'p, P: LocalPlatform<L>, M: Mmu, const L: usize> {
    quickmap: &'q LocalQuickMap<P, M, L>,
    va: VirtAddr,
    /// The slot, or `None` for a direct-map address.
    held: Option<LocalHeld<L>>,
    _page: PhantomData<&'p ()>,
    /// A raw pointer is neither `Send` nor `Sync`, and neither is the guard.
    _this_thread_only: PhantomData<*const ()>,
}

impl<'q, 'p, P: LocalPlatform<L>, M: Mmu, const L: usize> LocalMapping<'q, 'p, P, M, L> {
    /// # Safety
    ///
    /// `va` (in `held`'s slot, or in the direct map when `held` is `None`) was entered
    /// by `quickmap` for the calling thread, for a page that stays held for `'p`, and
    /// nothing else will remove it.
    pub(crate) unsafe fn new(
        quickmap: &'q LocalQuickMap<P, M, L>,
        va: VirtAddr,
        held: Option<LocalHeld<L>>,
    ) -> Self {
        LocalMapping {
            quickmap,
            va,
            held,
            _page: PhantomData,
            _this_thread_only: PhantomData,
        }
    }

    /// The kernel virtual address of the page: a slot of this thread's CPU (or the
    /// direct map), valid for this thread until the guard drops.
    pub fn va(&self) -> VirtAddr {
        self.va
    }

    /// A raw pointer to the page, valid in this thread until the guard drops (also
    /// across preemption and sleep). Dereferencing it is the caller's business, as for
    /// [`Mapping::as_mut_ptr`](crate::Mapping::as_mut_ptr).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.va.as_mut_ptr()
    }

    /// Copy the whole page from another local mapping of this thread.
    ///
    /// Copying a page onto itself (the same direct-mapped page mapped twice, so both
    /// guards have one address) changes nothing and moves no byte.
    pub fn copy_from(&self, source: &LocalMapping<'_, '_, P, M, L>) {
        // SAFETY: both are pages of live guards, this thread's.
        unsafe { copy_mapped_page(self.quickmap.mmu(), self.va, source.va) }
    }

    page_accessors! {
        setup: "use quickmap::sim::{SimConfig, SimMachine, SimPage};
use quickmap::PAGE_SIZE;

let machine = SimMachine::new(SimConfig::default());
let local = machine.local_quickmap();
let page = SimPage::high_memory(&machine, 0);
let mapping = local.map(&page);",
    }
}

impl<P: LocalPlatform<L>, M: Mmu, const L: usize> Drop for LocalMapping<'_, '_, P, M, L> {
    #[inline(always)]
    fn drop(&mut self) {
        // The guard owns its slot (see `new`) and this is its only removal; the guard is
        // not `Send`, so this runs on the thread that made it. A direct-map address took
        // no slot and needs nothing.
        if let Some(held) = self.held {
            self.quickmap.remove_slot(held);
        }
    }
}

impl<P: LocalPlatform<L>, M: Mmu, const L: usize> fmt::Debug for LocalMapping<'_, '_, P, M, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMapping")
            .field("va", &self.va)
            .finish()
    }
}
