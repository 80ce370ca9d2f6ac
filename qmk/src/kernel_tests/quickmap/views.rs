//! Views on the real MMU: several wired pages at consecutive addresses of this
//! CPU, reached across their page boundaries by the CPU itself (not only by
//! quickmap's byte movers), an unmapped guard page after them, and nothing left
//! reachable once the view drops.

use quickmap::{MemoryAttribute, PhysAddr, WindowLayout, PAGE_SIZE};

use super::{assert_unreachable, pattern_word, TestPage};
use crate::arch::paging::{DIRECT_MAP_BASE, WINDOW_REGION};
use crate::arch::quickmap_backend::{attribute_of, PTE_ADDRESS_MASK};
use crate::kernel_test;
use crate::memory::frame_allocator::{self, Zone};
use crate::vm::page::{VmPage, WiredRun};
use crate::vm::quick::{quickmap, WINDOWS_PER_CPU};

/// The direct-map address of `pa` (a page below `dmap`).
fn direct(pa: PhysAddr) -> usize {
    (DIRECT_MAP_BASE.as_u64() + pa.0) as usize
}

kernel_test! {
    /// A copy by the CPU (`copy_nonoverlapping` through the view's pointer)
    /// that runs across the boundary between two pages of a view lands in both
    /// frames, as read back through the direct map: the view's pages are the
    /// frames asked for, in order, side by side. Direct-mapped write-back pages
    /// take windows too (the direct map has no guard page).
    fn a_copy_across_the_page_boundary_of_a_view_lands_in_both_frames() {
        let pages = [TestPage::low(MemoryAttribute::WriteBack), TestPage::low(MemoryAttribute::WriteBack)];
        // Mapped in the order opposite to the allocator's, whatever that was.
        let wired = [pages[1].page().wire(), pages[0].page().wire()];
        let source: alloc::vec::Vec<u8> = (0..512).map(|i| (i * 7 + 3) as u8).collect();
        let view = quickmap().map_pages(&wired);
        assert!(WINDOW_REGION.contains(&(view.va().0 as u64)), "a view takes windows, got {}", view.va());
        assert_eq!(crate::sched::critical_depth(), 1, "a view pins its thread");
        let at = PAGE_SIZE - 200;
        // SAFETY: `at .. at + 512` lies inside the view's two pages, which the test
        // owns and nothing else touches while the view lives.
        unsafe { core::ptr::copy_nonoverlapping(source.as_ptr(), view.as_mut_ptr().add(at), source.len()) };
        let (first, second) = (wired[0].page().phys_addr(), wired[1].page().phys_addr());
        for (i, &byte) in source.iter().enumerate() {
            let (frame, offset) = if at + i < PAGE_SIZE { (first, at + i) } else { (second, at + i - PAGE_SIZE) };
            // SAFETY: the direct map maps the test's own low pages.
            let found = unsafe { ((direct(frame) + offset) as *const u8).read_volatile() };
            assert_eq!(found, byte, "byte {i} of the copy, at {offset:#x} of {frame}");
        }
        // And back through the accessors: an integer across the boundary.
        view.write_u64(PAGE_SIZE - 3, 0x0102_0304_0506_0708);
        // SAFETY: as above.
        let tail = unsafe { ((direct(first) + PAGE_SIZE - 3) as *const [u8; 3]).read_volatile() };
        assert_eq!(tail, [0x08, 0x07, 0x06]);
        assert_eq!(view.read_u64(PAGE_SIZE - 3), 0x0102_0304_0506_0708);
        drop(view);
        assert_eq!(crate::sched::critical_depth(), 0);
        assert_eq!(quickmap().windows_in_use(crate::cpu::current_cpu_index()), 0);
    }
}

kernel_test! {
    /// One byte past a view of any size (1 to `2 * WINDOWS_PER_CPU - 1`
    /// pages, odd and even) faults with a not-present fault, as does one byte
    /// before it, while its last byte is reachable; the guard page's entry is
    /// clear, and stays clear when single mappings take every window the view
    /// leaves free.
    fn one_byte_past_a_view_faults() {
        let pages: alloc::vec::Vec<TestPage> =
            (0..WindowLayout::max_view_pages(WINDOWS_PER_CPU)).map(|_| TestPage::high(MemoryAttribute::WriteBack)).collect();
        let wired: alloc::vec::Vec<_> = pages.iter().map(|page| page.page().wire()).collect();
        for count in 1..=wired.len() {
            let view = quickmap().map_pages(&wired[..count]);
            let end = view.va().add(view.len());
            view.write_u64(view.len() - 8, count as u64);
            // SAFETY: the view's last word, inside the view.
            let last = unsafe { ((end.0 - 8) as *const u64).read_volatile() };
            assert_eq!(last, count as u64);
            let singles: alloc::vec::Vec<_> =
                core::iter::from_fn(|| quickmap().try_map(&wired[0]).ok()).collect();
            assert_eq!(quickmap().mmu().read_pte(end), 0, "{count} pages: the guard page's entry");
            assert_unreachable(end.0);
            assert_unreachable(view.va().0 - 1);
            drop((view, singles));
        }
    }
}

kernel_test! {
    /// After the view drops, every one of its pages faults on this CPU (its
    /// entry cleared and its translation invalidated, window pages and the
    /// guard pages between them alike), though each was in the TLB.
    fn every_page_of_a_view_faults_after_it_is_dropped() {
        let pages = [
            TestPage::high(MemoryAttribute::WriteBack),
            TestPage::high(MemoryAttribute::WriteBack),
            TestPage::high(MemoryAttribute::WriteBack),
            TestPage::high(MemoryAttribute::WriteBack),
        ];
        let wired = [pages[0].page().wire(), pages[1].page().wire(), pages[2].page().wire(), pages[3].page().wire()];
        let view = quickmap().map_pages(&wired);
        let va = view.va();
        for (k, page) in wired.iter().enumerate() {
            // Touch each page so that its translation is cached.
            view.write_u64(k * PAGE_SIZE, pattern_word(page.page().phys_addr(), 5, 0));
        }
        drop(view);
        for k in 0..4 {
            let page = va.add(k * PAGE_SIZE);
            assert_eq!(quickmap().mmu().read_pte(page), 0, "page {k}'s entry cleared");
            assert_unreachable(page.0);
        }
        // The pages kept what the view wrote.
        for (k, page) in wired.iter().enumerate() {
            assert_eq!(quickmap().map(page).read_u64(0), pattern_word(page.page().phys_addr(), 5, 0), "page {k}");
        }
    }
}

kernel_test! {
    /// A run of physically contiguous high-memory frames maps as one view:
    /// its pages in physical order, one attribute for all; a single mapping
    /// taken meanwhile gets a window the view leaves free, and sees what the
    /// view wrote; and each page of a scattered view keeps its own attribute.
    fn a_contiguous_run_and_per_page_attributes() {
        let run = frame_allocator::allocate_contiguous(Zone::High, 3, 1)
            .expect("quickmap tests need 3 contiguous high frames");
        let start = run.start.start_address().as_u64();
        let pages: [VmPage; 3] = core::array::from_fn(|k| {
            VmPage::managed(PhysAddr(start + (k * PAGE_SIZE) as u64), MemoryAttribute::WriteBack)
        });
        {
            let wired = [pages[0].wire(), pages[1].wire(), pages[2].wire()];
            let run_view = WiredRun::new(&wired);
            let view = quickmap().map_range(&run_view);
            for k in 0..3 {
                let pte = quickmap().mmu().read_pte(view.va().add(k * PAGE_SIZE));
                assert_eq!(pte & PTE_ADDRESS_MASK, start + (k * PAGE_SIZE) as u64, "page {k}");
            }
            view.fill(PAGE_SIZE - 16, 2 * PAGE_SIZE + 16, 0x5c);
            let single = quickmap().map(&wired[2]);
            assert_unreachable(view.va().0 + view.len());
            assert_eq!(single.read_u64(PAGE_SIZE - 8), u64::from_ne_bytes([0x5c; 8]));
            let first = view.va();
            drop(view);
            assert_unreachable(first.0);
            assert_eq!(single.read_u64(0), u64::from_ne_bytes([0x5c; 8]), "the single mapping outlives the view");
        }
        frame_allocator::free_run(run);

        let attributes = [MemoryAttribute::WriteCombining, MemoryAttribute::Uncacheable, MemoryAttribute::WriteThrough];
        let pages = attributes.map(TestPage::high);
        let wired = [pages[0].page().wire(), pages[1].page().wire(), pages[2].page().wire()];
        let view = quickmap().map_pages(&wired);
        for (k, attribute) in attributes.into_iter().enumerate() {
            let pte = quickmap().mmu().read_pte(view.va().add(k * PAGE_SIZE));
            assert_eq!(attribute_of(pte), attribute, "page {k}");
        }
        view.write_u32(PAGE_SIZE - 2, 0xa5a5_5a5a);
        assert_eq!(view.read_u32(PAGE_SIZE - 2), 0xa5a5_5a5a);
    }
}
