//! The kernel's own tests, registered with `kernel_test!` and run with
//! `mode=test` (see `docs/kernel-protocol.md`).

mod boot_options;
mod critical;
mod faults;
mod frames;
mod heap;
mod migrate;
mod paging;
mod quickmap;
mod sched;
mod smp;

use crate::arch::paging::{PAGE_SIZE, SCRATCH_REGION};
use crate::arch::VirtAddr;

/// A page of the scratch region for tests that map pages. Each test uses its
/// own slot numbers so that a test which fails half-way cannot make another
/// test's `map_page` fail with "already mapped".
pub(crate) fn scratch_page(slot: u64) -> VirtAddr {
    let address = SCRATCH_REGION.start + slot * PAGE_SIZE;
    assert!(
        SCRATCH_REGION.contains(&address),
        "scratch slot {slot} lies outside the scratch region"
    );
    VirtAddr::new(address)
}

/// A frame for a test that maps it: high memory when there is any (the case
/// quickmap exists for), else a direct-mapped frame (`dmap` covers all RAM).
pub(crate) fn test_frame() -> crate::arch::PhysFrame {
    use crate::memory::frame_allocator::{allocate_frame, Zone};
    allocate_frame(Zone::High)
        .or_else(|_| allocate_frame(Zone::DirectMapped))
        .expect("a test needs one free frame")
}
