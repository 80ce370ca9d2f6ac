//! The window region's last-level entries as one array: what every backend indexes.

use crate::addr::{VirtAddr, PAGE_SIZE};

/// The entries that translate `region_base .. region_base + region_pages * PAGE_SIZE`,
/// in order (the backends' constructors promise it), named by region page.
pub(crate) struct EntryArray {
    region_base: VirtAddr,
    region_pages: usize,
    entries: *mut u64,
}

impl EntryArray {
    pub(crate) const fn new(region_base: VirtAddr, region_pages: usize, entries: *mut u64) -> Self {
        EntryArray {
            region_base,
            region_pages,
            entries,
        }
    }

    /// The entry of `region_page`. Quickmap passes only pages of its own region, whose
    /// entries lie in the array, so the hot path checks in debug builds only.
    #[inline]
    pub(crate) fn entry(&self, region_page: usize, backend: &str) -> *mut u64 {
        debug_assert!(
            region_page < self.region_pages,
            "quickmap: window page {region_page} is outside the {backend} backend's region"
        );
        self.entries.wrapping_add(region_page)
    }

    /// The entry of the window at `va`, checked: for tests and diagnostics, which may
    /// pass any address.
    pub(crate) fn entry_at(&self, va: VirtAddr, backend: &str) -> *mut u64 {
        let region_page = va.0.wrapping_sub(self.region_base.0) / PAGE_SIZE;
        assert!(
            region_page < self.region_pages,
            "quickmap: {va} is outside the {backend} backend's window region"
        );
        self.entries.wrapping_add(region_page)
    }
}
