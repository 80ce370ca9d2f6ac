//! Each broken rule of the contract panics with the rule's name (one boot each).

use quickmap::{MemoryAttribute, PhysAddr};
use spin::Once;

use super::TestPage;
use crate::kernel_test;
use crate::vm::page::VmPage;
use crate::vm::quick::{
    deferred_quickmap, pmap_quick_enter_page, pmap_quick_remove_page, quickmap, DEFERRED_MAX_CPUS,
    WINDOWS_PER_CPU,
};

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

kernel_test! {
    /// *"not safe ... to sleep ... while holding these mappings"*: quickmap's
    /// might-sleep check names the rule before the generic critical-section one.
    #[should_panic(expected = "quickmap: sleep while mapped")]
    fn sleep_while_mapped() {
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let _mapping = quickmap().map(&wired);
        crate::sched::sleep(core::time::Duration::from_millis(1));
    }
}

kernel_test! {
    /// A window belongs to the CPU that entered it: a remove on another CPU
    /// (here, the address handed to a thread pinned elsewhere) is caught.
    #[should_panic(expected = "quickmap: remove on another CPU")]
    fn remove_on_another_cpu() {
        if crate::cpu::cpu_count() < 2 {
            crate::test_harness::skip("needs 2 CPUs");
            return;
        }
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let va = pmap_quick_enter_page(wired.page());
        let here = crate::cpu::current_cpu_index();
        let elsewhere = (here + 1) % crate::cpu::cpu_count();
        // Sleeping (join) while mapped is itself a broken rule, so the other
        // thread is only started here and the test spins until it panics.
        let _other = crate::sched::spawn_pinned("foreign-remove", elsewhere, move || {
            // SAFETY: deliberately breaks the contract: `va` is another CPU's.
            unsafe { pmap_quick_remove_page(va) };
        });
        loop {
            core::hint::spin_loop();
        }
    }
}

/// The page the leaking tick hooks map (high memory: it takes a window).
static LEAKED_PAGE: Once<TestPage> = Once::new();

/// A timer interrupt on CPU 0 that enters a window of `map`'s instance and
/// forgets the guard, so it returns still holding the window.
fn tick_leaks_a_window(map: fn(&crate::vm::page::Wired<'_>)) {
    if crate::cpu::current_cpu_index() != 0 {
        return;
    }
    let Some(page) = LEAKED_PAGE.get() else {
        return;
    };
    let wired = page.page().wire();
    map(&wired);
}

fn tick_leaks_a_strict_window() {
    tick_leaks_a_window(|wired| core::mem::forget(quickmap().map(wired)));
}

fn tick_leaks_a_deferred_window() {
    tick_leaks_a_window(|wired| core::mem::forget(deferred_quickmap().map(wired)));
}

/// Installs `hook` as the tick hook and waits for the tick that panics.
fn wait_for_leaking_tick(hook: fn()) -> ! {
    LEAKED_PAGE.call_once(|| TestPage::high(MemoryAttribute::WriteBack));
    crate::sched::set_tick_hook(Some(hook));
    loop {
        core::hint::spin_loop();
    }
}

kernel_test! {
    /// An interrupt handler must give back every window it took before it
    /// returns (quickmap's claim is a plain load and store that relies on it):
    /// the common interrupt path catches the timer tick that leaks one.
    // The tick's vector differs by arch (0x20 on x86_64, 0x1e on aarch64):
    // the expected text starts after it.
    #[should_panic(expected = "on CPU 0 entered 1 window(s) it did not remove (0b")]
    fn interrupt_returned_holding_a_window() {
        wait_for_leaking_tick(tick_leaks_a_strict_window);
    }
}

kernel_test! {
    /// The same rule for the deferred instance's windows.
    #[should_panic(expected = "on CPU 0 entered 1 deferred window(s) it did not remove (0b")]
    fn interrupt_returned_holding_a_deferred_window() {
        if crate::cpu::cpu_count() > DEFERRED_MAX_CPUS {
            crate::test_harness::skip("no deferred instance on more than 8 CPUs");
            return;
        }
        wait_for_leaking_tick(tick_leaks_a_deferred_window);
    }
}
