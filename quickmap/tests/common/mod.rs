//! Shared by the integration tests (each test file includes it with `mod common;`).
#![allow(dead_code, missing_docs)]

use quickmap::sim::SimMachine;
use quickmap::{ContextPolicy, ExecutionContext, MemoryAttribute, Platform};
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
    unsafe fn read_bytes(&self, src: VirtAddr, dst: &mut [u8]) {
        // SAFETY: forwarded.
        unsafe { self.0.read_bytes(src, dst) }
    }
    unsafe fn write_bytes(&self, dst: VirtAddr, src: &[u8]) {
        // SAFETY: forwarded.
        unsafe { self.0.write_bytes(dst, src) }
    }
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

/// The same platform, with the man page's context rules enforced word for word.
#[derive(Clone, Copy)]
pub struct FreeBsdRules<P>(pub P);

// SAFETY: forwards every promise to the wrapped platform.
unsafe impl<P: Platform> Platform for FreeBsdRules<P> {
    const CONTEXT_POLICY: ContextPolicy = ContextPolicy::FreeBsd;

    fn current_cpu(&self) -> usize {
        self.0.current_cpu()
    }
    fn critical_enter(&self) {
        self.0.critical_enter()
    }
    fn critical_exit(&self) {
        self.0.critical_exit()
    }
    fn execution_context(&self) -> ExecutionContext {
        self.0.execution_context()
    }
}
