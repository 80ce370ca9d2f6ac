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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_indexed_by_region_page_and_by_address() {
        let mut entries = [0u64; 4];
        let base = VirtAddr(0xffff_c000_0000_0000);
        let array = EntryArray::new(base, entries.len(), entries.as_mut_ptr());
        assert_eq!(array.entry(2, "test"), entries.as_mut_ptr().wrapping_add(2));
        assert_eq!(
            array.entry_at(base.add(3 * PAGE_SIZE + 7), "test"),
            entries.as_mut_ptr().wrapping_add(3)
        );
    }

    #[test]
    #[should_panic(expected = "is outside the test backend's window region")]
    fn an_address_past_the_region_is_refused() {
        let mut entries = [0u64; 4];
        let base = VirtAddr(0xffff_c000_0000_0000);
        let array = EntryArray::new(base, entries.len(), entries.as_mut_ptr());
        array.entry_at(base.add(4 * PAGE_SIZE), "test");
    }

    #[test]
    #[should_panic(expected = "is outside the test backend's window region")]
    fn an_address_below_the_region_is_refused() {
        let mut entries = [0u64; 4];
        let base = VirtAddr(0xffff_c000_0000_0000);
        let array = EntryArray::new(base, entries.len(), entries.as_mut_ptr());
        array.entry_at(VirtAddr(base.0 - PAGE_SIZE), "test");
    }
}
