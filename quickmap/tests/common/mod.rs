//! Shared by the integration tests (each test file includes it with `mod common;`).
#![allow(dead_code, missing_docs)]

use std::cell::Cell;

use quickmap::sim::SimMachine;
use quickmap::{MemoryAttribute, Platform};
use quickmap::{Mmu, PhysAddr, VirtAddr, Window, PAGE_SIZE};

/// A recognisable page content: every 8-byte word holds `(pfn, generation, word index)`.
pub fn pattern(pfn: usize, generation: u64) -> Vec<u8> {
    (0..PAGE_SIZE / 8)
        .flat_map(|word| ((pfn as u64) << 48 ^ generation << 16 ^ word as u64).to_le_bytes())
        .collect()
}

pub fn phys_page(machine: &SimMachine, pa: PhysAddr) -> Vec<u8> {
    let mut page = vec![0; PAGE_SIZE];
    machine.phys_read(pa, &mut page);
    page
}

/// The four byte movers of `Mmu`, forwarded to the wrapped backend in field
/// `$inner`: a broken test backend breaks translations, never how bytes move through
/// them, and must not fall back on the defaults (they dereference, which the
/// simulated machine's addresses cannot take).
macro_rules! forward_byte_movers {
    ($inner:tt) => {
        unsafe fn read_bytes(&self, src: VirtAddr, dst: &mut [u8]) {
            // SAFETY: forwarded from this function's contract.
            unsafe { self.$inner.read_bytes(src, dst) }
        }
        unsafe fn write_bytes(&self, dst: VirtAddr, src: &[u8]) {
            // SAFETY: forwarded from this function's contract.
            unsafe { self.$inner.write_bytes(dst, src) }
        }
        unsafe fn fill_bytes(&self, dst: VirtAddr, len: usize, byte: u8) {
            // SAFETY: forwarded from this function's contract.
            unsafe { self.$inner.fill_bytes(dst, len, byte) }
        }
        unsafe fn copy_bytes(&self, dst: VirtAddr, src: VirtAddr, len: usize) {
            // SAFETY: forwarded from this function's contract.
            unsafe { self.$inner.copy_bytes(dst, src, len) }
        }
    };
}

/// A backend that forgets to invalidate: what a missing `invlpg` looks like.
#[derive(Clone, Copy)]
pub struct ForgetsInvalidation<M>(pub M);

// SAFETY: test-only; deliberately breaks promise 2 of `Mmu` to show the tests notice.
unsafe impl<M: Mmu> Mmu for ForgetsInvalidation<M> {
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        self.0.set_window_pte(window, pa, attribute)
    }
    fn clear_window_pte(&self, window: Window) {
        self.0.clear_window_pte(window)
    }
    fn invalidate_local(&self, _va: VirtAddr) {}
    fn invalidate_all_local(&self) {
        self.0.invalidate_all_local()
    }
    forward_byte_movers!(0);
}

/// A platform that does not pin: critical sections do nothing.
#[derive(Clone, Copy)]
pub struct DoesNotPin<P>(pub P);

// SAFETY: test-only; deliberately breaks promise 1 of `Platform` to show the tests notice.
unsafe impl<P: Platform> Platform for DoesNotPin<P> {
    fn current_cpu(&self) -> usize {
        self.0.current_cpu()
    }
    fn critical_enter(&self) {}
    fn critical_exit(&self) {}
}

/// Where a [`MidPairInterrupts`] backend is when it offers an interrupt: which of its
/// page-table or TLB operations quickmap is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `set_window_pte` (inside `enter`).
    SetPte,
    /// `clear_window_pte` (inside the remove of an uncached window, or a flush).
    ClearPte,
    /// `invalidate_local` (inside a remove).
    InvalidateLocal,
    /// `invalidate_all_local` (inside a flush).
    InvalidateAll,
}

/// Whether the offer comes before or after the wrapped operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Before,
    After,
}

/// The hook-time callback of this thread, while [`with_interrupt_controller`] runs.
type Controller = *const (dyn Fn(Hook, Phase) + 'static);

thread_local! {
    static CONTROLLER: Cell<Option<Controller>> = const { Cell::new(None) };
}

/// Run `body` with `controller` called before and after every page-table and TLB
/// operation of every [`MidPairInterrupts`] backend on this thread. The controller
/// may deliver an interrupt there (`SimMachine::interrupt`) whose handler uses the
/// same quickmap instance: an interrupt in the middle of quickmap's `enter`, `remove`
/// or flush, which `SimMachine::interrupt` alone (between two test steps) cannot give.
///
/// This is how the backend reaches the quickmap that owns it without a self-reference:
/// the controller (which borrows the quickmap) is lent to a thread-local slot for the
/// duration of `body` only.
pub fn with_interrupt_controller<R>(
    controller: &dyn Fn(Hook, Phase),
    body: impl FnOnce() -> R,
) -> R {
    /// Empties the slot when `body` returns or unwinds.
    struct Lent;
    impl Drop for Lent {
        fn drop(&mut self) {
            CONTROLLER.with(|slot| slot.set(None));
        }
    }
    let erased: *const (dyn Fn(Hook, Phase) + '_) = controller;
    // SAFETY: only the trait object's lifetime bound changes (same fat pointer layout).
    // The slot holds the pointer only while `body` runs: `Lent` empties it when this
    // function returns or unwinds, and `controller` is borrowed for the whole call, so
    // every dereference in `offer_interrupt` happens while the closure and everything
    // it borrows are alive.
    let erased: Controller = unsafe { std::mem::transmute(erased) };
    CONTROLLER.with(|slot| {
        assert!(
            slot.get().is_none(),
            "with_interrupt_controller does not nest"
        );
        slot.set(Some(erased));
    });
    let _lent = Lent;
    body()
}

fn offer_interrupt(hook: Hook, phase: Phase) {
    if let Some(controller) = CONTROLLER.with(Cell::get) {
        // SAFETY: the slot holds a pointer only while `with_interrupt_controller` runs,
        // which keeps the closure borrowed (see there); `Fn` may be called re-entrantly,
        // so a nested offer from the interrupt handler is fine.
        unsafe { (*controller)(hook, phase) }
    }
}

/// A correct backend that offers an interrupt to the thread's controller (see
/// [`with_interrupt_controller`]) before and after each page-table and TLB operation:
/// where a real interrupt may arrive, between two instructions of quickmap.
#[derive(Clone, Copy)]
pub struct MidPairInterrupts<M>(pub M);

// SAFETY: forwards every operation to the wrapped backend unchanged; what runs in
// between is an interrupt handler, which the platform may run there anyway.
unsafe impl<M: Mmu> Mmu for MidPairInterrupts<M> {
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        offer_interrupt(Hook::SetPte, Phase::Before);
        self.0.set_window_pte(window, pa, attribute);
        offer_interrupt(Hook::SetPte, Phase::After);
    }
    fn clear_window_pte(&self, window: Window) {
        offer_interrupt(Hook::ClearPte, Phase::Before);
        self.0.clear_window_pte(window);
        offer_interrupt(Hook::ClearPte, Phase::After);
    }
    fn invalidate_local(&self, va: VirtAddr) {
        offer_interrupt(Hook::InvalidateLocal, Phase::Before);
        self.0.invalidate_local(va);
        offer_interrupt(Hook::InvalidateLocal, Phase::After);
    }
    fn invalidate_all_local(&self) {
        offer_interrupt(Hook::InvalidateAll, Phase::Before);
        self.0.invalidate_all_local();
        offer_interrupt(Hook::InvalidateAll, Phase::After);
    }
    forward_byte_movers!(0);
}

/// A backend whose full flush comes one window too late: `invalidate_all_local`
/// leaves in the TLB the translation of the last window whose entry was cleared
/// before it (on the simulated machine, through its fault-injection hook
/// `SimMachine::tlb_insert_stale`).
pub struct FlushSparesLastCleared<'m, M> {
    inner: M,
    machine: &'m SimMachine,
    last_cleared: Cell<Option<Window>>,
}

impl<'m, M> FlushSparesLastCleared<'m, M> {
    pub fn new(inner: M, machine: &'m SimMachine) -> Self {
        FlushSparesLastCleared {
            inner,
            machine,
            last_cleared: Cell::new(None),
        }
    }
}

// SAFETY: test-only; deliberately breaks promise 2 of `Mmu` (for one window per full
// flush) to show the tests notice.
unsafe impl<M: Mmu> Mmu for FlushSparesLastCleared<'_, M> {
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        self.inner.set_window_pte(window, pa, attribute)
    }
    fn clear_window_pte(&self, window: Window) {
        self.inner.clear_window_pte(window);
        self.last_cleared.set(Some(window));
    }
    fn invalidate_local(&self, va: VirtAddr) {
        self.inner.invalidate_local(va)
    }
    fn invalidate_all_local(&self) {
        let cpu = self.machine.executing_cpu();
        let spared = self
            .last_cleared
            .take()
            .filter(|window| window.cpu == cpu)
            .and_then(|window| Some((window.va, self.machine.tlb_entry(cpu, window.va)?)));
        self.inner.invalidate_all_local();
        if let Some((va, (pa, attribute))) = spared {
            self.machine.tlb_insert_stale(cpu, va, pa, attribute);
        }
    }
    forward_byte_movers!(inner);
}

/// A backend whose full flush does nothing: a deferred pool on it enters windows
/// again while their old translations are still cached.
#[derive(Clone, Copy)]
pub struct FlushesNothing<M>(pub M);

// SAFETY: test-only; deliberately breaks promise 2 of `Mmu` to show the tests notice.
unsafe impl<M: Mmu> Mmu for FlushesNothing<M> {
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        self.0.set_window_pte(window, pa, attribute)
    }
    fn clear_window_pte(&self, window: Window) {
        self.0.clear_window_pte(window)
    }
    fn invalidate_local(&self, va: VirtAddr) {
        self.0.invalidate_local(va)
    }
    fn invalidate_all_local(&self) {}
    forward_byte_movers!(0);
}
