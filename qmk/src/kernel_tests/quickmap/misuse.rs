//! Each broken rule of the contract panics with the rule's name (one boot each).

use quickmap::{MemoryAttribute, PhysAddr};

use super::TestPage;
use crate::kernel_test;
use crate::vm::page::VmPage;
use crate::vm::quick::{pmap_quick_enter_page, pmap_quick_remove_page, quickmap, WINDOWS_PER_CPU};

kernel_test! {
    /// Nesting beyond the CPU's windows is a panic, never a silent reuse.
    #[should_panic(expected = "quickmap: nesting beyond capacity")]
    fn capacity_exceeded() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let _held: alloc::vec::Vec<_> = (0..=WINDOWS_PER_CPU).map(|_| quickmap().map(&wired)).collect();
    }
}

kernel_test! {
    #[should_panic(expected = "quickmap: double remove")]
    fn double_remove() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let va = pmap_quick_enter_page(wired.page());
        // SAFETY: deliberately breaks the contract (the second remove).
        unsafe {
            pmap_quick_remove_page(va);
            pmap_quick_remove_page(va);
        }
    }
}

kernel_test! {
    #[should_panic(expected = "quickmap: remove of a foreign address")]
    fn remove_of_a_foreign_address() {
        // SAFETY: deliberately breaks the contract: never returned by enter.
        unsafe { pmap_quick_remove_page(0xffff_e000_0000_0000) };
    }
}

kernel_test! {
    #[should_panic(expected = "quickmap: unaligned page: physical address")]
    fn unaligned_physical_address() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let skewed = VmPage::managed(PhysAddr(page.page().phys_addr().0 + 8), MemoryAttribute::WriteBack);
        let wired = skewed.wire();
        let _ = pmap_quick_enter_page(wired.page());
    }
}

kernel_test! {
    /// *"It must be either wired or held, or it must belong to an unmanaged region."*
    #[should_panic(expected = "quickmap: page not wired or held")]
    fn page_neither_wired_nor_held() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let _ = pmap_quick_enter_page(page.page());
    }
}
