//! `VmPage`: what the kernel knows about one physical page.

use core::sync::atomic::{AtomicU32, Ordering};

use quickmap::{HeldPage, HeldRange, MemoryAttribute, PhysAddr, PAGE_SIZE};

/// A physical page as the VM system tracks it (FreeBSD's `struct vm_page`, cut
/// down to what quick mappings need).
///
/// A managed page may be reclaimed when nobody wires or holds it; an unmanaged
/// page (device memory, firmware tables) is never reclaimed.
#[derive(Debug)]
pub struct VmPage {
    phys_addr: PhysAddr,
    memory_attribute: MemoryAttribute,
    wire_count: AtomicU32,
    hold_count: AtomicU32,
    /// Non-zero while the page cannot be reclaimed: wires plus holds, plus one for
    /// good if the page is unmanaged. One word, so the check on every quick mapping
    /// is a single load.
    residency: AtomicU32,
}

impl VmPage {
    /// A page of RAM the VM system manages; it starts neither wired nor held.
    pub const fn managed(phys_addr: PhysAddr, memory_attribute: MemoryAttribute) -> VmPage {
        VmPage {
            phys_addr,
            memory_attribute,
            wire_count: AtomicU32::new(0),
            hold_count: AtomicU32::new(0),
            residency: AtomicU32::new(0),
        }
    }

    /// A page of an unmanaged region (e.g. I/O device memory): never reclaimed.
    pub const fn unmanaged(phys_addr: PhysAddr, memory_attribute: MemoryAttribute) -> VmPage {
        VmPage {
            residency: AtomicU32::new(1),
            ..VmPage::managed(phys_addr, memory_attribute)
        }
    }

    /// Physical address of the page.
    pub fn phys_addr(&self) -> PhysAddr {
        self.phys_addr
    }

    /// How mappings of the page are cached.
    pub fn memory_attribute(&self) -> MemoryAttribute {
        self.memory_attribute
    }

    /// Wire the page: it stays resident until the returned guard drops.
    pub fn wire(&self) -> Wired<'_> {
        self.wire_count.fetch_add(1, Ordering::AcqRel);
        self.residency.fetch_add(1, Ordering::AcqRel);
        Wired { page: self }
    }

    /// Hold the page (FreeBSD's `vm_page_hold`): a lighter pin than wiring with
    /// the same meaning for quick mappings.
    pub fn hold(&self) {
        self.hold_count.fetch_add(1, Ordering::AcqRel);
        self.residency.fetch_add(1, Ordering::AcqRel);
    }

    /// Undo one [`hold`](Self::hold).
    pub fn unhold(&self) {
        let before = self.hold_count.fetch_sub(1, Ordering::AcqRel);
        assert!(
            before > 0,
            "vm: unhold of page {} that is not held",
            self.phys_addr
        );
        self.residency.fetch_sub(1, Ordering::AcqRel);
    }

    /// Wire and hold counts.
    pub fn pins(&self) -> (u32, u32) {
        (
            self.wire_count.load(Ordering::Acquire),
            self.hold_count.load(Ordering::Acquire),
        )
    }

    /// Whether the page cannot be reclaimed now: *"It must be either wired or
    /// held, or it must belong to an unmanaged region such as I/O device memory."*
    #[inline]
    pub fn is_resident(&self) -> bool {
        self.residency.load(Ordering::Acquire) != 0
    }
}

/// A wired page; unwired when dropped. Quick mappings of it may be made with
/// the safe API, since the borrow keeps it wired while mapped.
#[derive(Debug)]
pub struct Wired<'p> {
    page: &'p VmPage,
}

impl Wired<'_> {
    /// The wired page.
    pub fn page(&self) -> &VmPage {
        self.page
    }
}

impl Drop for Wired<'_> {
    fn drop(&mut self) {
        self.page.residency.fetch_sub(1, Ordering::AcqRel);
        self.page.wire_count.fetch_sub(1, Ordering::AcqRel);
    }
}

// SAFETY: the page stays wired for as long as this guard lives, and a borrow of
// the guard cannot outlive it; address and attribute are fixed at creation.
unsafe impl HeldPage for Wired<'_> {
    fn phys_addr(&self) -> PhysAddr {
        self.page.phys_addr
    }

    fn memory_attribute(&self) -> MemoryAttribute {
        self.page.memory_attribute
    }
}

/// Wired pages that are physically contiguous and share one memory attribute,
/// as `vm_page_alloc_contig` hands them out: one [`HeldRange`], which the
/// kernel's quickmap maps as one view (`quickmap().map_range(&run)`).
///
/// It borrows the pages' [`Wired`] guards, so every page stays wired while a
/// view of the run lives.
#[derive(Debug)]
pub struct WiredRun<'r, 'p> {
    pages: &'r [Wired<'p>],
}

impl<'r, 'p> WiredRun<'r, 'p> {
    /// The run of `pages`, in order.
    ///
    /// # Panics
    ///
    /// If `pages` is empty, if a page does not start where the one before it
    /// ends, or if the pages' memory attributes differ.
    #[track_caller]
    pub fn new(pages: &'r [Wired<'p>]) -> Self {
        let Some(first) = pages.first() else {
            panic!("vm: run not contiguous: a run needs at least one page")
        };
        for (index, pair) in pages.windows(2).enumerate() {
            let (before, page) = (pair[0].page, pair[1].page);
            if page.phys_addr.0 != before.phys_addr.0 + PAGE_SIZE as u64 {
                panic!(
                    "vm: run not contiguous: page {} at {} does not follow page {index} at {}; \
                     map scattered pages with `map_pages`",
                    index + 1,
                    page.phys_addr,
                    before.phys_addr
                );
            }
            if page.memory_attribute != first.page.memory_attribute {
                panic!(
                    "vm: run not contiguous: page {} is {:?} but the run is {:?}; map pages \
                     of several attributes with `map_pages`",
                    index + 1,
                    page.memory_attribute,
                    first.page.memory_attribute
                );
            }
        }
        WiredRun { pages }
    }
}

// SAFETY: 1. the address and length are those of the borrowed guards, fixed
// for the borrow, and a `VmPage`'s address is page-aligned; 2. each page stays
// wired while its `Wired` guard lives, which outlives every borrow of the run;
// `new` checked that the pages are contiguous; 3. `new` checked that every
// page has the first one's attribute, under which each may be mapped.
unsafe impl HeldRange for WiredRun<'_, '_> {
    fn phys_addr(&self) -> PhysAddr {
        self.pages[0].page.phys_addr
    }

    fn pages(&self) -> usize {
        self.pages.len()
    }

    fn memory_attribute(&self) -> MemoryAttribute {
        self.pages[0].page.memory_attribute
    }
}
