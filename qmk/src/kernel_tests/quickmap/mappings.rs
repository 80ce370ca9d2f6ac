//! Windows, invalidation, guard pages, memory attributes, the direct map, and
//! the page helpers, on the real MMU.

use quickmap::{MemoryAttribute, VirtAddr, PAGE_SIZE};

use super::{assert_unreachable, pattern_word, TestPage};
use crate::arch::paging::{DIRECT_MAP_BASE, WINDOW_REGION};
use crate::arch::quickmap_backend::{
    assert_window_entry_protection, attribute_of, PTE_ADDRESS_MASK,
};
use crate::kernel_test;
use crate::vm::quick::{
    pmap_copy_page, pmap_quick_enter_page, pmap_quick_remove_page, pmap_zero_page, quickmap,
};

fn in_window_region(va: usize) -> bool {
    WINDOW_REGION.contains(&(va as u64))
}

fn write_word(va: usize, offset: usize, value: u64) {
    // SAFETY: `va` maps a page the test owns; `offset` is 8-byte aligned inside it.
    unsafe { ((va + offset) as *mut u64).write_volatile(value) }
}

kernel_test! {
    /// A high-memory page is reachable only through a window; after the remove
    /// the window faults on this CPU (no stale TLB entry survives, unlike
    /// FreeBSD i386), and its page-table entry is clear.
    fn window_reaches_high_memory_and_faults_after_remove() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let va = pmap_quick_enter_page(wired.page());
        assert!(in_window_region(va), "high memory takes a window, got {va:#x}");
        for offset in [0, 8, PAGE_SIZE / 2, PAGE_SIZE - 8] {
            write_word(va, offset, pattern_word(page.page().phys_addr(), 1, offset));
        }
        // A second mapping of the same page, in another window, sees the writes.
        let second = quickmap().map(&wired);
        assert_ne!(second.va().0, va);
        for offset in [0, 8, PAGE_SIZE / 2, PAGE_SIZE - 8] {
            assert_eq!(second.read_u64(offset), pattern_word(page.page().phys_addr(), 1, offset));
        }
        let second_va = second.va().0;
        drop(second);
        // SAFETY: `va` came from the enter above, in this context.
        unsafe { pmap_quick_remove_page(va) };
        assert_eq!(quickmap().mmu().read_pte(VirtAddr(va)), 0, "window entry cleared");
        assert_unreachable(va);
        assert_unreachable(second_va);
    }
}

kernel_test! {
    /// The old window faults also right after a different page was entered in
    /// another window, and windows are released out of order (not LIFO).
    fn no_stale_translation_after_reentering_another_window() {
        let (a, b, c) = (
            TestPage::high(MemoryAttribute::WriteBack),
            TestPage::high(MemoryAttribute::WriteBack),
            TestPage::high(MemoryAttribute::WriteBack),
        );
        let (a, b, c) = (a.page().wire(), b.page().wire(), c.page().wire());
        let first = quickmap().map(&a);
        first.write_u64(0, 0xa);
        let window = first.va().0;
        drop(first);
        assert_unreachable(window);

        let c_mapping = quickmap().map(&c);
        assert_eq!(c_mapping.va().0, window, "the freed window is reused");
        let b_mapping = quickmap().map(&b);
        assert_ne!(b_mapping.va().0, window);
        b_mapping.write_u64(0, 0xb);
        drop(c_mapping); // released before b: not LIFO
        assert_unreachable(window);
        assert_eq!(b_mapping.read_u64(0), 0xb, "b is still mapped");
        let b_window = b_mapping.va().0;
        drop(b_mapping);
        assert_unreachable(b_window);
        assert_eq!(quickmap().windows_in_use(crate::cpu::current_cpu_index()), 0);
    }
}

kernel_test! {
    /// Every window is followed by an unmapped guard page: one byte past a
    /// window faults, while the window itself is reachable.
    fn one_byte_past_a_window_faults() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let mappings = [quickmap().map(&wired), quickmap().map(&wired)];
        for mapping in &mappings {
            mapping.write_u64(PAGE_SIZE - 8, 7);
            assert_unreachable(mapping.va().0 + PAGE_SIZE);
        }
    }
}

kernel_test! {
    /// Each of the six memory types reaches the window entry as its memory
    /// type bits (PAT/PCD/PWT on x86_64, AttrIndx on aarch64); the entry has
    /// the arch's window protection (`assert_window_entry_protection`); and the
    /// page is usable through it.
    fn every_memory_attribute_selects_its_pat_entry() {
        for attribute in MemoryAttribute::ALL {
            let page = TestPage::high(attribute);
            let wired = page.page().wire();
            let mapping = quickmap().map(&wired);
            let pte = quickmap().mmu().read_pte(mapping.va());
            assert_eq!(attribute_of(pte), attribute, "PTE {pte:#x}");
            assert_eq!(pte & PTE_ADDRESS_MASK, page.page().phys_addr().0);
            assert_window_entry_protection(pte);
            mapping.write_u64(64, 0x1234_5678);
            assert_eq!(mapping.read_u64(64), 0x1234_5678, "{attribute:?}");
        }
    }
}

kernel_test! {
    /// A write-back page in the direct map comes back at its direct-map address
    /// with no entry written, nothing invalidated and preemption left on; the
    /// same frame with another attribute takes a window, so it is never mapped
    /// with two cache types through quickmap.
    fn direct_map_fast_path_only_for_write_back() {
        #[cfg(feature = "stats")]
        let before = quickmap().total_stats();
        let low = TestPage::low(MemoryAttribute::WriteBack);
        let wired = low.page().wire();
        let va = pmap_quick_enter_page(wired.page());
        assert_eq!(va as u64, DIRECT_MAP_BASE.as_u64() + low.page().phys_addr().0);
        assert_eq!(crate::sched::critical_depth(), 0, "the direct map pins nothing");
        // SAFETY: from the enter above.
        unsafe { pmap_quick_remove_page(va) };
        #[cfg(feature = "stats")]
        {
            let after = quickmap().total_stats();
            assert_eq!(after.window_maps, before.window_maps);
            assert_eq!(after.invalidations, before.invalidations);
            assert_eq!(after.direct_map_hits, before.direct_map_hits + 1);
        }

        for attribute in MemoryAttribute::ALL.into_iter().filter(|&a| a != MemoryAttribute::WriteBack) {
            let page = crate::vm::page::VmPage::managed(low.page().phys_addr(), attribute);
            let wired = page.wire();
            let mapping = quickmap().map(&wired);
            assert!(in_window_region(mapping.va().0), "{attribute:?} inside the direct map takes a window");
            assert_eq!(attribute_of(quickmap().mmu().read_pte(mapping.va())), attribute);
        }
    }
}

kernel_test! {
    /// pmap_zero_page and pmap_copy_page on high memory, byte for byte, and
    /// copies between a buffer and a run of pages at unaligned offsets.
    fn zero_copy_and_run_copies_on_high_memory() {
        let pages = [
            TestPage::high(MemoryAttribute::WriteBack),
            TestPage::high(MemoryAttribute::WriteBack),
            TestPage::low(MemoryAttribute::WriteBack),
        ];
        let wired = [pages[0].page().wire(), pages[1].page().wire(), pages[2].page().wire()];
        let source = quickmap().map(&wired[0]);
        for offset in (0..PAGE_SIZE).step_by(8) {
            source.write_u64(offset, pattern_word(pages[0].page().phys_addr(), 3, offset));
        }
        drop(source);
        pmap_copy_page(pages[0].page(), pages[1].page());
        pmap_copy_page(pages[1].page(), pages[2].page());
        for target in [&wired[1], &wired[2]] {
            let mapping = quickmap().map(target);
            for offset in (0..PAGE_SIZE).step_by(8) {
                assert_eq!(mapping.read_u64(offset), pattern_word(pages[0].page().phys_addr(), 3, offset), "offset {offset}");
            }
        }
        pmap_zero_page(pages[1].page());
        let mut page_bytes = alloc::vec![0xffu8; PAGE_SIZE];
        quickmap().map(&wired[1]).read(0, &mut page_bytes);
        assert!(page_bytes.iter().all(|&b| b == 0), "zeroed");

        for (offset, len) in [(1, 1), (4095, 2), (100, 2 * PAGE_SIZE + 7), (0, 3 * PAGE_SIZE), (3 * PAGE_SIZE - 3, 3)] {
            let data: alloc::vec::Vec<u8> = (0..len).map(|i| (i * 31 + offset) as u8).collect();
            quickmap().copy_to_pages(&wired, offset, &data);
            let mut back = alloc::vec![0u8; len];
            quickmap().copy_from_pages(&wired, offset, &mut back);
            assert!(back == data, "run copy at offset {offset}, {len} bytes");
        }
        assert_eq!(quickmap().windows_in_use(crate::cpu::current_cpu_index()), 0);
    }
}

kernel_test! {
    /// *"or it must belong to an unmanaged region such as I/O device memory"*: an
    /// unmanaged page maps without being wired or held.
    fn unmanaged_pages_need_no_wiring() {
        let ram = TestPage::high(MemoryAttribute::Uncacheable);
        let device = crate::vm::page::VmPage::unmanaged(ram.page().phys_addr(), MemoryAttribute::Uncacheable);
        let va = pmap_quick_enter_page(&device);
        assert!(in_window_region(va));
        assert_eq!(attribute_of(quickmap().mmu().read_pte(VirtAddr(va))), MemoryAttribute::Uncacheable);
        // SAFETY: from the enter above.
        unsafe { pmap_quick_remove_page(va) };
    }
}
