//! The pages a benchmark thread works on: a ring of held pages from one zone,
//! owned by the thread and given back when it is done.

use alloc::vec::Vec;

use quickmap::{HeldPage, MemoryAttribute, PhysAddr, PAGE_SIZE};

use crate::arch::paging::DIRECT_MAP_BASE;
use crate::arch::{PhysAddr as ArchPhysAddr, PhysFrame};
use crate::memory::frame_allocator::{self, Zone};
use crate::vm::page::VmPage;

/// Pages in most variants' ring.
pub const RING: usize = 16;

/// Held, write-back pages of one zone.
pub struct PageRing {
    pages: Vec<VmPage>,
}

impl PageRing {
    /// Allocates `len` frames from `zone` and holds them (as a caller of
    /// `pmap_quick_enter_page` must).
    ///
    /// # Panics
    ///
    /// When the zone is out of frames (the benchmark needs a direct map
    /// smaller than RAM, so that high memory exists).
    pub fn new(zone: Zone, len: usize) -> PageRing {
        let pages = (0..len)
            .map(|_| {
                let frame = frame_allocator::allocate_frame(zone).unwrap_or_else(|error| {
                    panic!("bench: no free {zone:?} frame (is dmap below the RAM size?): {error}")
                });
                let page = VmPage::managed(frame.into(), MemoryAttribute::WriteBack);
                page.hold();
                page
            })
            .collect();
        PageRing { pages }
    }

    /// The ring as `N` pages.
    ///
    /// # Panics
    ///
    /// When the ring does not hold exactly `N` pages.
    pub fn pages<const N: usize>(&self) -> Pages<'_, N> {
        const { assert!(N.is_power_of_two()) };
        let pages =
            self.pages.as_slice().try_into().unwrap_or_else(|_| {
                panic!("bench: a ring of {} pages used as {N}", self.pages.len())
            });
        Pages(pages)
    }
}

impl Drop for PageRing {
    fn drop(&mut self) {
        for page in &self.pages {
            page.unhold();
            let frame = PhysFrame::containing_address(ArchPhysAddr::new(page.phys_addr().0));
            frame_allocator::free_frame(frame);
        }
    }
}

/// The `N` pages of a ring, one register wide: `N` is a power of two, so the
/// next page is one `and` away and every variant's loop has the same shape as
/// the empty loop.
#[derive(Clone, Copy)]
pub struct Pages<'r, const N: usize>(&'r [VmPage; N]);

impl<'r, const N: usize> Pages<'r, N> {
    /// Page `index` modulo the ring size.
    #[inline(always)]
    pub fn get(self, index: usize) -> &'r VmPage {
        &self.0[index % N]
    }

    /// Page `index` modulo the ring size, as a [`HeldPage`] for quickmap's
    /// safe API.
    #[inline(always)]
    pub fn held(self, index: usize) -> Held<'r> {
        Held(self.get(index))
    }
}

/// A page of a [`PageRing`], which holds it.
pub struct Held<'r>(&'r VmPage);

// SAFETY: the ring holds each of its pages from `PageRing::new` until it drops,
// and a `Held` borrows the ring's pages, so it cannot outlive the hold; address
// and attribute are fixed when the page is made.
unsafe impl HeldPage for Held<'_> {
    #[inline(always)]
    fn phys_addr(&self) -> PhysAddr {
        self.0.phys_addr()
    }

    #[inline(always)]
    fn memory_attribute(&self) -> MemoryAttribute {
        self.0.memory_attribute()
    }
}

/// The direct-map address of a direct-mapped page.
#[inline(always)]
pub fn direct_address(page: &VmPage) -> usize {
    (DIRECT_MAP_BASE.as_u64() + page.phys_addr().0) as usize
}

/// The word every pair reads, changes and writes back: one cache line.
const TOUCH_OFFSET: usize = 0;

/// Read-modify-write one `u64` of the page mapped at `va`: the access that a
/// pair pays the mapping for.
#[inline(always)]
pub fn touch(va: usize) {
    const { assert!(TOUCH_OFFSET + 8 <= PAGE_SIZE) };
    let word = (va + TOUCH_OFFSET) as *mut u64;
    // SAFETY: `va` maps a page of RAM the calling thread holds, writable, for
    // the duration of the call (each variant maps it before and unmaps it
    // after); the page is the bench thread's own, so nobody else accesses it,
    // and the access is volatile because the frame may be mapped more than
    // once (direct map and window).
    unsafe { word.write_volatile(word.read_volatile().wrapping_add(1)) }
}
