//! The checks above have teeth: with a backend that skips the local
//! single-page invalidation (`invlpg` on x86_64, `tlbi vale1` on aarch64), a
//! removed window stays reachable through the stale TLB entry, which
//! `assert_unreachable` would report, while the same instance on the real
//! backend faults at once; and with a backend that skips the local full flush
//! (a CR3 reload, `tlbi vmalle1`), so does a deferred window after its flush.
//! The wrappers are arch-neutral: they wrap `arch::quickmap_backend::KernelMmu`,
//! so the same tests prove it on both architectures.

use crate::arch::quickmap_backend::KernelMmu;
use quickmap::{
    CpuWindows, Deferred, Invalidation, MemoryAttribute, Mmu, PhysAddr, Platform, QuickMap,
    VirtAddr, Window,
};

use super::TestPage;
use crate::arch::paging::{LARGE_PAGE_SIZE, WINDOW_REGION};
use crate::cpu::MAX_CPUS;
use crate::kernel_test;
use crate::vm::quick::{
    self, QmkPlatform, DEFERRED_MAX_CPUS, DEFERRED_WINDOWS_PER_CPU, WINDOWS_PER_CPU,
};

/// The entry writes of `Mmu`, forwarded to the real backend in field 0: the
/// broken backends below break invalidation only, so that what the tests see is
/// the stale TLB entry and not a wrong page-table entry.
macro_rules! forward_entry_writes {
    () => {
        fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
            self.0.set_window_pte(window, pa, attribute);
        }

        fn clear_window_pte(&self, window: Window) {
            self.0.clear_window_pte(window);
        }
    };
}

/// Writes a word through a window of `broken`, removes the window, runs
/// `after_remove` with its address, and asserts that the window still reads the
/// word through the stale TLB entry the broken backend left, until a real
/// local invalidation makes it fault.
fn assert_reachable_until_invlpg<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    broken: &QuickMap<P, M, N, I>,
    after_remove: impl FnOnce(usize),
) {
    let page = TestPage::high(MemoryAttribute::WriteBack);
    let wired = page.page().wire();
    let mapping = broken.map(&wired);
    mapping.write_u64(0, 0x5a5a_5a5a);
    let va = mapping.va().0;
    drop(mapping);
    after_remove(va);
    // SAFETY: the window's entry is clear; the read goes through the stale TLB
    // entry to this function's own page (what the tests demonstrate).
    let stale = unsafe { super::deferred::read_stale(va) };
    assert_eq!(
        stale, 0x5a5a_5a5a,
        "the stale translation still reaches the page"
    );
    crate::arch::paging::invalidate_local(crate::arch::VirtAddr::new(va as u64));
    super::assert_unreachable(va);
}

/// Delegates to the real backend but never invalidates a page (no `invlpg`,
/// no `tlbi vale1`).
struct SkipsInvalidation(KernelMmu);

// SAFETY: test-only and deliberately broken (promise 2 of `Mmu`): the window
// entries are written as by the real backend; only the invalidation is missing.
unsafe impl Mmu for SkipsInvalidation {
    forward_entry_writes!();

    fn invalidate_local(&self, _va: VirtAddr) {}
}

static BROKEN_WINDOWS: [CpuWindows<WINDOWS_PER_CPU>; MAX_CPUS] =
    [const { CpuWindows::new() }; MAX_CPUS];
/// The control's own: an array of `CpuWindows` serves one instance for good.
static CONTROL_WINDOWS: [CpuWindows<WINDOWS_PER_CPU>; MAX_CPUS] =
    [const { CpuWindows::new() }; MAX_CPUS];

kernel_test! {
    /// Without `invlpg` (`tlbi vale1`), the removed window still reads the old
    /// page; the same windows on the real backend fault right after remove.
    fn a_backend_without_invlpg_leaves_the_window_reachable() {
        let region = WINDOW_REGION.start + 2 * LARGE_PAGE_SIZE;
        let windows = &BROKEN_WINDOWS[..crate::cpu::cpu_count()];
        let broken: QuickMap<_, _, WINDOWS_PER_CPU> =
            quick::build(QmkPlatform, region, windows, SkipsInvalidation).unwrap();
        assert_reachable_until_invlpg(&broken, |_| {});

        // The control: the same region (its windows all free again), the real
        // backend. The page is read through the window first, so that a
        // translation is cached for remove to drop.
        let control_windows = &CONTROL_WINDOWS[..crate::cpu::cpu_count()];
        let real: QuickMap<_, _, WINDOWS_PER_CPU> =
            quick::build(QmkPlatform, region, control_windows, |mmu| mmu).unwrap();
        let page = TestPage::high(MemoryAttribute::WriteBack);
        let wired = page.page().wire();
        let mapping = real.map(&wired);
        mapping.write_u64(0, 0xa5a5_a5a5);
        assert_eq!(mapping.read_u64(0), 0xa5a5_a5a5);
        let va = mapping.va().0;
        drop(mapping);
        super::assert_unreachable(va);
    }
}

/// Delegates to the real backend but never flushes the whole local TLB.
struct SkipsFullFlush(KernelMmu);

// SAFETY: test-only and deliberately broken (promise 2 of `Mmu`, for
// `invalidate_all_local`): entries are written and single addresses
// invalidated as by the real backend; only the full flush is missing.
unsafe impl Mmu for SkipsFullFlush {
    forward_entry_writes!();

    fn invalidate_local(&self, va: VirtAddr) {
        self.0.invalidate_local(va);
    }

    fn invalidate_all_local(&self) {}
}

static NO_FLUSH_WINDOWS: [CpuWindows<DEFERRED_WINDOWS_PER_CPU>; DEFERRED_MAX_CPUS] =
    [const { CpuWindows::new() }; DEFERRED_MAX_CPUS];

kernel_test! {
    /// A deferred instance whose backend skips the local full flush: after
    /// `flush_local` the window's entry is clear, yet the window still reads the
    /// old page through the stale TLB entry; the flush is what makes it fault.
    fn a_deferred_backend_without_full_flush_leaves_the_window_reachable() {
        super::deferred::on_one_cpu("deferred-teeth", || {
            // A 2 MiB slot no other instance uses (0, 2, 4, 6 and 8 are taken).
            let region = WINDOW_REGION.start + 10 * LARGE_PAGE_SIZE;
            let windows = &NO_FLUSH_WINDOWS[..crate::cpu::cpu_count()];
            let broken: QuickMap<_, _, DEFERRED_WINDOWS_PER_CPU, Deferred> =
                quick::build(QmkPlatform, region, windows, SkipsFullFlush).unwrap();
            assert_reachable_until_invlpg(&broken, |va| {
                broken.flush_local();
                assert_eq!(broken.mmu().0.read_pte(VirtAddr(va)), 0, "the flush cleared the entry");
            });
        });
    }
}
