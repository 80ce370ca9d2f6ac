//! The kernel's deferred instance on the real MMU: a removed write-back window
//! stays reachable (stale, as deferred invalidation allows) until the CPU
//! flushes, by `flush_local` or on its own once its clean windows are used up,
//! and is unreachable from then on; a window of any other memory type is
//! unreachable right after its remove.
//!
//! Each test that relies on a stale translation runs in a thread pinned to one
//! CPU: the flush is per CPU, so the read, the flush and the probe must all
//! happen on the CPU that removed the window.

use alloc::vec::Vec;

use quickmap::{MemoryAttribute, VirtAddr, PAGE_SIZE};

use super::{assert_unreachable, pattern_word, TestPage};
use crate::arch::quickmap_backend::{attribute_of, PTE_ADDRESS_MASK};
use crate::kernel_test;
use crate::vm::quick::{
    deferred_quickmap, qmk_deferred_enter_page, qmk_deferred_remove_page, DEFERRED_MAX_CPUS,
    DEFERRED_WINDOWS_PER_CPU,
};

/// Runs `body` in a thread pinned to the current CPU and waits for it; `false`
/// (after marking the test skipped) when this machine has no deferred instance.
pub(super) fn on_one_cpu(name: &str, body: impl FnOnce() + Send + 'static) -> bool {
    if crate::cpu::cpu_count() > DEFERRED_MAX_CPUS {
        crate::test_harness::skip("the deferred instance serves at most 8 CPUs");
        return false;
    }
    let cpu = crate::cpu::current_cpu_index();
    crate::sched::spawn_pinned(name, cpu, body).join();
    true
}

/// The page the deferred instance's entry for `va` maps, if any.
fn mapped_frame(va: usize) -> Option<u64> {
    let pte = deferred_quickmap().mmu().read_pte(VirtAddr(va));
    (pte != 0).then_some(pte & PTE_ADDRESS_MASK)
}

/// Reads the word at `va` through whatever translation this CPU has.
///
/// # Safety
///
/// `va` is translated on this CPU (perhaps by a stale TLB entry) to a page
/// the calling test owns.
pub(super) unsafe fn read_stale(va: usize) -> u64 {
    // SAFETY: forwarded from this function's contract; the address is 8-byte
    // aligned (a window start).
    unsafe { (va as *const u64).read_volatile() }
}

kernel_test! {
    /// After the remove of a write-back page the deferred window still reads
    /// the page (its entry is left in place: allowed in deferred mode);
    /// `flush_local` clears the entry and flushes this CPU's TLB, and the
    /// address faults from then on.
    fn deferred_window_is_unreachable_after_flush_local() {
        on_one_cpu("deferred-flush-local", || {
            let quickmap = deferred_quickmap();
            let page = TestPage::high(MemoryAttribute::WriteBack);
            let wired = page.page().wire();
            let word = pattern_word(page.page().phys_addr(), 7, 0);
            let mapping = quickmap.map(&wired);
            mapping.write_u64(0, word);
            let va = mapping.va().0;
            drop(mapping);
            assert_eq!(mapped_frame(va), Some(page.page().phys_addr().0), "the entry is left in place");
            // SAFETY: the entry still maps the test's own page (just checked).
            let stale = unsafe { read_stale(va) };
            assert_eq!(stale, word, "the removed window still reaches the page until the flush");
            assert_eq!(quickmap.windows_in_use(crate::cpu::current_cpu_index()), 0);
            quickmap.flush_local();
            assert_eq!(mapped_frame(va), None, "the flush clears the entry");
            assert_unreachable(va);
        });
    }
}

kernel_test! {
    /// Without `flush_local`: once this CPU has used every clean window, the
    /// next enter flushes the pool on its own, and the stale window faults.
    fn deferred_window_is_unreachable_after_the_pool_flushes_on_its_own() {
        on_one_cpu("deferred-pool-flush", || {
            let quickmap = deferred_quickmap();
            let cpu = crate::cpu::current_cpu_index();
            // A known start: every free window of this CPU clean.
            quickmap.flush_local();
            #[cfg(feature = "stats")]
            let flushes_before = quickmap.stats(cpu).full_flushes;
            // A filler page first, so that after the pool's flush the enter that
            // caused it takes the filler's window (the lowest clean one), not the
            // window under test.
            let filler = TestPage::high(MemoryAttribute::WriteBack);
            drop(quickmap.map(&filler.page().wire()));
            let page = TestPage::high(MemoryAttribute::WriteBack);
            let wired = page.page().wire();
            let word = pattern_word(page.page().phys_addr(), 9, PAGE_SIZE - 8);
            let mapping = quickmap.map(&wired);
            mapping.write_u64(PAGE_SIZE - 8, word);
            let va = mapping.va().0;
            drop(mapping);
            // SAFETY: the entry still maps the test's own page (it was just removed
            // and nothing has flushed since).
            let stale = unsafe { read_stale(va + PAGE_SIZE - 8) };
            assert_eq!(stale, word, "the removed window still reaches the page until a flush");

            // Distinct pages, each mapped and removed, until the pool flushes.
            let mut others = Vec::new();
            while mapped_frame(va) == Some(page.page().phys_addr().0) {
                assert!(
                    others.len() < 2 * DEFERRED_WINDOWS_PER_CPU,
                    "{} distinct pages mapped and the pool never flushed",
                    others.len()
                );
                let other = TestPage::high(MemoryAttribute::WriteBack);
                drop(quickmap.map(&other.page().wire()));
                others.push(other);
            }
            assert_eq!(quickmap.windows_in_use(cpu), 0);
            assert_eq!(
                mapped_frame(va),
                None,
                "after the pool's flush the window under test is clean (the enter that flushed took another)"
            );
            assert!(
                others.len() >= DEFERRED_WINDOWS_PER_CPU - 2,
                "the pool flushed after {} pages, before its clean windows were used up",
                others.len()
            );
            #[cfg(feature = "stats")]
            assert_eq!(quickmap.stats(cpu).full_flushes, flushes_before + 1, "one full flush");
            assert_unreachable(va);
            assert_unreachable(va + PAGE_SIZE - 8);
            // Leave no stale window onto pages about to be freed.
            quickmap.flush_local();
        });
    }
}

kernel_test! {
    /// A page of any other memory type than write-back is never left mapped by
    /// the deferred instance: its window is cleared and invalidated at remove
    /// (through the guard and through the exported enter/remove alike), so a
    /// frame never keeps a stale uncached or write-combining alias.
    fn deferred_non_write_back_windows_are_unreachable_after_remove() {
        if crate::cpu::cpu_count() > DEFERRED_MAX_CPUS {
            crate::test_harness::skip("the deferred instance serves at most 8 CPUs");
            return;
        }
        let quickmap = deferred_quickmap();
        for attribute in MemoryAttribute::ALL.into_iter().filter(|&a| a != MemoryAttribute::WriteBack) {
            let page = TestPage::high(attribute);
            let wired = page.page().wire();
            #[cfg(feature = "stats")]
            let before = quickmap.total_stats();
            let mapping = quickmap.map(&wired);
            assert_eq!(attribute_of(quickmap.mmu().read_pte(mapping.va())), attribute);
            mapping.write_u64(0, 0x5a5a_0000 + attribute as u64);
            assert_eq!(mapping.read_u64(0), 0x5a5a_0000 + attribute as u64, "{attribute:?}");
            let va = mapping.va().0;
            drop(mapping);
            assert_eq!(mapped_frame(va), None, "{attribute:?}: entry cleared at remove");
            assert_unreachable(va);
            #[cfg(feature = "stats")]
            assert_eq!(quickmap.total_stats().invalidations, before.invalidations + 1, "{attribute:?}");

            let kva = qmk_deferred_enter_page(wired.page());
            assert_eq!(attribute_of(quickmap.mmu().read_pte(VirtAddr(kva))), attribute);
            // SAFETY: `kva` was entered just above, in this context.
            unsafe { qmk_deferred_remove_page(kva) };
            assert_eq!(mapped_frame(kva), None, "{attribute:?}: entry cleared at remove");
            assert_unreachable(kva);
        }
    }
}
