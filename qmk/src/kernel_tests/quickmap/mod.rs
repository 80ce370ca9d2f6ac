//! quickmap on real x86_64 paths: every guarantee of `pmap_quick_enter_page(9)`
//! checked on the MMU, TLB, scheduler and interrupts of this kernel.
//!
//! - [`mappings`]: windows, invalidation, guard pages, memory attributes, the
//!   direct-map fast path, and the page helpers (one CPU is enough).
//! - [`deferred`]: the deferred instance: a removed write-back window is
//!   stale until the CPU flushes (by `flush_local` or on its own) and faults
//!   from then on; other memory types fault right after remove.
//! - [`misuse`]: each broken rule panics with its name (one boot each).
//! - [`stress`]: 10^6 pairs per instance (strict, deferred) under preemption,
//!   migration, timer interrupts that map pages (and flush), and spin locks.
//! - [`teeth`]: a backend that skips `invlpg`, or the deferred full flush, is
//!   caught by the same checks.
//! - [`local`]: local mappings (Linux's `kmap_local_page`): two threads per CPU
//!   at the same slots across 10^5 switches, 10^6 local pairs with preemptions
//!   and sleeps while mapped, teeth (a scheduler that skips the switch-in hook,
//!   or lets a holder migrate), and each rule.
//! - [`views`]: several pages at consecutive addresses (scattered or a
//!   contiguous run): copies across their page boundaries, a fault one byte
//!   past the view, and after it is dropped.

mod deferred;
mod local;
mod mappings;
mod misuse;
mod stress;
mod teeth;
mod views;

use quickmap::{MemoryAttribute, PhysAddr};

use crate::arch::fault_probe::probe_read_u8;
use crate::arch::VirtAddr;
use crate::fault_expectation::expect_page_fault;
use crate::memory::frame_allocator::{self, Zone};
use crate::vm::page::VmPage;

/// A page of RAM owned by a test, freed when dropped.
pub struct TestPage {
    page: VmPage,
}

impl TestPage {
    /// A high-memory page (reachable only through a window) with `attribute`.
    pub fn high(attribute: MemoryAttribute) -> TestPage {
        TestPage::from_zone(Zone::High, attribute)
    }

    /// A direct-mapped page with `attribute`.
    pub fn low(attribute: MemoryAttribute) -> TestPage {
        TestPage::from_zone(Zone::DirectMapped, attribute)
    }

    fn from_zone(zone: Zone, attribute: MemoryAttribute) -> TestPage {
        let frame = frame_allocator::allocate_frame(zone).unwrap_or_else(|error| {
            panic!(
                "quickmap tests need a free {zone:?} frame (is dmap below the RAM size?): {error}"
            )
        });
        TestPage {
            page: VmPage::managed(frame.into(), attribute),
        }
    }

    /// The VM page.
    pub fn page(&self) -> &VmPage {
        &self.page
    }
}

impl Drop for TestPage {
    fn drop(&mut self) {
        let frame = crate::arch::PhysFrame::containing_address(crate::arch::PhysAddr::new(
            self.page.phys_addr().0,
        ));
        frame_allocator::free_frame(frame);
    }
}

/// Asserts that reading `address` on this CPU page-faults (the probe recovers
/// the fault): the address has no translation, not even a stale one.
#[track_caller]
pub fn assert_unreachable(address: usize) {
    let address = VirtAddr::new(address as u64);
    let fault = expect_page_fault(address..address + 1u64, || {
        // SAFETY: the address is expected to be unmapped; if it were still
        // mapped, it would be a window of the calling test's own page, whose
        // read is harmless.
        let _ = unsafe { probe_read_u8(address) };
    });
    assert!(
        fault.page_was_not_present(),
        "the fault at {address:#x} must be a not-present fault, error code {:#x}",
        fault.error_code
    );
}

/// A test pattern for `page` at generation `generation`: the word at byte
/// `offset` of the page.
pub fn pattern_word(page: PhysAddr, generation: u64, offset: usize) -> u64 {
    page.0.rotate_left(17) ^ generation.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ offset as u64
}
