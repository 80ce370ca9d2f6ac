use core::ops::Range;

use super::{scratch_page, test_frame};
use crate::arch::fault_probe::{probe_read_u8, probe_write_u8};
use crate::arch::paging::{
    self, MapError, PageTableFlags, UnmapError, DIRECT_MAP_BASE, PAGE_SIZE, WINDOW_REGION,
};
use crate::arch::{PhysAddr, VirtAddr};
use crate::fault_expectation::expect_page_fault;
use crate::kernel_test;
use crate::memory::frame_allocator::{self, Zone};

const DATA_FLAGS: PageTableFlags = PageTableFlags::WRITABLE.union(PageTableFlags::NO_EXECUTE);

fn one_byte(address: VirtAddr) -> Range<VirtAddr> {
    address..address + 1u64
}

/// Fills the page at `address` with a pattern derived from `seed`.
///
/// # Safety
///
/// The page is mapped writable and owned by the caller.
unsafe fn fill_page(address: VirtAddr, seed: u64) {
    let words: *mut u64 = address.as_mut_ptr();
    for index in 0..(PAGE_SIZE / 8) as usize {
        // SAFETY: index < 512 words of the page the caller owns.
        unsafe { words.add(index).write_volatile(seed ^ index as u64) };
    }
}

/// Checks the pattern `fill_page` wrote.
///
/// # Safety
///
/// The page is mapped readable and owned by the caller.
unsafe fn check_page(address: VirtAddr, seed: u64) {
    let words: *const u64 = address.as_ptr();
    for index in 0..(PAGE_SIZE / 8) as usize {
        // SAFETY: as in `fill_page`.
        let word = unsafe { words.add(index).read_volatile() };
        assert_eq!(
            word,
            seed ^ index as u64,
            "word {index} of the page at {:#x}",
            address.as_u64()
        );
    }
}

kernel_test! {
    /// A write through a new mapping is visible through the direct map; after
    /// unmapping, the address faults (not-present) and the frame is intact.
    fn map_write_read_back_then_unmap_faults() {
        let frame = frame_allocator::allocate_frame(Zone::DirectMapped).unwrap();
        let address = scratch_page(1);
        paging::map_page(address, frame, DATA_FLAGS).unwrap();
        let translation = paging::translate(address).expect("the new mapping translates");
        assert_eq!(translation.physical, frame.start_address());
        assert_eq!(translation.page_size, PAGE_SIZE);

        // SAFETY: the page was just mapped writable to a frame this test owns.
        unsafe { fill_page(address, 0x5eed_0001) };
        let direct = paging::direct_map_address(frame.start_address()).unwrap();
        // SAFETY: the same frame, through the direct map.
        unsafe { check_page(direct, 0x5eed_0001) };

        assert_eq!(paging::unmap_page(address), Ok(frame));
        assert_eq!(paging::translate(address), None);
        let fault = expect_page_fault(one_byte(address + 100u64), || {
            // SAFETY: the address is unmapped (that is what is tested); had
            // it been mapped, it would be the test's own frame.
            let result = unsafe { probe_read_u8(address + 100u64) };
            assert!(result.is_err(), "the read of an unmapped page must fault");
        });
        assert_eq!(fault.address, address + 100u64);
        assert!(fault.page_was_not_present());
        assert!(!fault.was_write());
        assert_eq!(paging::unmap_page(address), Err(UnmapError::NotMapped(address)));
        frame_allocator::free_frame(frame);
    }
}

kernel_test! {
    /// High memory is not direct-mapped: the direct-map address of the first
    /// byte at or above `dmap` faults, the last byte below it does not, and a
    /// high frame is reachable only after mapping it.
    fn high_memory_is_unmapped() {
        let direct_map_end = paging::direct_map_end();
        let last_direct = DIRECT_MAP_BASE + (direct_map_end.as_u64() - 1);
        // SAFETY: the last byte of the direct map is RAM (a read has no side
        // effects) and the test holds no reference to it.
        let last = unsafe { probe_read_u8(last_direct) };
        assert!(last.is_ok(), "the last direct-mapped byte is reachable");

        let first_high = DIRECT_MAP_BASE + direct_map_end.as_u64();
        let fault = expect_page_fault(one_byte(first_high), || {
            // SAFETY: the address is not mapped (that is the claim under test).
            let _ = unsafe { probe_read_u8(first_high) };
        });
        assert!(fault.page_was_not_present());

        // With `dmap` covering all RAM there is no high memory to try.
        let Ok(high) = frame_allocator::allocate_frame(Zone::High) else {
            return;
        };
        assert_eq!(paging::direct_map_address(high.start_address()), None);
        let would_be = DIRECT_MAP_BASE + high.start_address().as_u64();
        expect_page_fault(one_byte(would_be), || {
            // SAFETY: as above: a direct-map address of high memory.
            let _ = unsafe { probe_write_u8(would_be, 0xaa) };
        });

        let address = scratch_page(2);
        paging::map_page(address, high, DATA_FLAGS).unwrap();
        // SAFETY: the page now maps the high frame this test owns.
        unsafe {
            fill_page(address, 0x41);
            check_page(address, 0x41);
        }
        assert_eq!(paging::unmap_page(address), Ok(high));
        frame_allocator::free_frame(high);
    }
}

kernel_test! {
    /// One byte past a single mapped page (an unmapped neighbour: a guard
    /// page) faults, while the page's last byte does not.
    fn byte_past_a_mapping_faults() {
        let frame = test_frame();
        let address = scratch_page(4);
        paging::map_page(address, frame, DATA_FLAGS).unwrap();
        let last_byte = address + (PAGE_SIZE - 1);
        // SAFETY: the test owns the frame; the byte is mapped writable.
        unsafe { probe_write_u8(last_byte, 7).unwrap() };
        // SAFETY: as above.
        assert_eq!(unsafe { probe_read_u8(last_byte) }, Ok(7));
        let past = address + PAGE_SIZE;
        let fault = expect_page_fault(one_byte(past), || {
            // SAFETY: the next scratch page is unmapped.
            let _ = unsafe { probe_write_u8(past, 7) };
        });
        assert!(fault.was_write() && fault.page_was_not_present());
        paging::unmap_page(address).unwrap();
        frame_allocator::free_frame(frame);
    }
}

kernel_test! {
    /// Mapping over an existing mapping or inside the direct map's large
    /// pages is refused; misaligned addresses are refused.
    fn map_refuses_conflicts() {
        let frame = test_frame();
        let address = scratch_page(6);
        paging::map_page(address, frame, DATA_FLAGS).unwrap();
        assert!(matches!(
            paging::map_page(address, frame, DATA_FLAGS),
            Err(MapError::AlreadyMapped { .. })
        ));
        let inside_direct_map =
            DIRECT_MAP_BASE + (paging::direct_map_range().start.as_u64() + 0x20_0000);
        assert_eq!(
            paging::map_page(inside_direct_map, frame, DATA_FLAGS),
            Err(MapError::InsideLargePage(inside_direct_map))
        );
        assert_eq!(
            paging::unmap_page(inside_direct_map),
            Err(UnmapError::InsideLargePage(inside_direct_map))
        );
        assert_eq!(
            paging::map_page(address + 8u64, frame, DATA_FLAGS),
            Err(MapError::NotPageAligned(address + 8u64))
        );
        paging::unmap_page(address).unwrap();
        frame_allocator::free_frame(frame);
    }
}

kernel_test! {
    /// The kernel image is mapped with section permissions: text is not
    /// writable, rodata is neither writable nor executable, and a write to
    /// rodata faults as a protection violation.
    fn kernel_image_permissions() {
        let text = VirtAddr::new(kernel_image_permissions as *const () as u64);
        let text_flags = paging::translate(text).unwrap().flags;
        assert!(!text_flags.contains(PageTableFlags::WRITABLE));
        assert!(!text_flags.contains(PageTableFlags::NO_EXECUTE));

        static READ_ONLY: u64 = 0x1234_5678;
        let rodata = VirtAddr::from_ptr(&READ_ONLY);
        let rodata_flags = paging::translate(rodata).unwrap().flags;
        assert!(!rodata_flags.contains(PageTableFlags::WRITABLE));
        assert!(rodata_flags.contains(PageTableFlags::NO_EXECUTE));
        let fault = expect_page_fault(one_byte(rodata), || {
            // SAFETY: the write cannot succeed (the page is read-only, which
            // is what is tested); had it succeeded the test would fail anyway.
            let _ = unsafe { probe_write_u8(rodata, 0) };
        });
        assert!(fault.was_write() && !fault.page_was_not_present());
        assert_eq!(READ_ONLY, 0x1234_5678);
    }
}

kernel_test! {
    /// `ensure_leaf_table` hands out the PTE array of a window-region span:
    /// writing an entry there maps the page, clearing it (plus a local
    /// invalidation) makes the page fault again.
    fn leaf_table_entries_map_window_pages() {
        let window = VirtAddr::new(WINDOW_REGION.start + 0x1000);
        let leaf = paging::ensure_leaf_table(window).unwrap();
        assert_eq!(leaf.covered().start, VirtAddr::new(WINDOW_REGION.start));
        assert_eq!(paging::ensure_leaf_table(window).unwrap().frame(), leaf.frame(), "created once");
        assert_eq!(
            leaf.entries().cast::<u64>(),
            leaf.entry_pointer(leaf.covered().start).cast::<u64>(),
            "the PTE array starts with the entry of the span's first page"
        );

        let frame = test_frame();
        let entry = paging::leaf_entry(frame, DATA_FLAGS);
        // SAFETY: the entry belongs to this test's window page, which nothing
        // else maps or uses; it was not present, so no TLB entry needs dropping.
        unsafe { leaf.entry_pointer(window).cast::<u64>().write_volatile(entry) };
        assert_eq!(paging::translate(window).unwrap().physical, frame.start_address());
        // SAFETY: the page maps the high frame this test owns.
        unsafe {
            fill_page(window, 0x77);
            check_page(window, 0x77);
        }

        // SAFETY: as above; the mapping is the test's own.
        unsafe { leaf.entry_pointer(window).cast::<u64>().write_volatile(0) };
        paging::invalidate_local(window);
        expect_page_fault(one_byte(window), || {
            // SAFETY: the page was just unmapped.
            let _ = unsafe { probe_read_u8(window) };
        });
        frame_allocator::free_frame(frame);
    }
}

kernel_test! {
    /// The direct map covers exactly `dmap` MiB from the start of RAM with
    /// large pages at the documented base, and virtual 0 is not mapped.
    fn direct_map_layout() {
        let start = paging::direct_map_range().start.as_u64();
        let translation = paging::translate(DIRECT_MAP_BASE + (start + 0x1234)).unwrap();
        assert_eq!(translation.physical, PhysAddr::new(start + 0x1234));
        assert_eq!(translation.page_size, paging::LARGE_PAGE_SIZE);
        assert!(translation.flags.contains(PageTableFlags::NO_EXECUTE));
        assert_eq!(paging::translate(VirtAddr::new(0)), None, "null is unmapped");
        let end = paging::direct_map_end();
        assert!(paging::translate(DIRECT_MAP_BASE + (end.as_u64() - 1)).is_some());
        assert_eq!(paging::translate(DIRECT_MAP_BASE + end.as_u64()), None);
    }
}
