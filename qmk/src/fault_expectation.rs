//! Faults a test expects: arm an expectation for an address range, run an
//! access through one of the arch's probes (`arch::fault_probe`), and get the
//! fault back instead of a crash.
//!
//! What is the same on every architecture lives here: the per-CPU
//! expectation, arming it, and deciding whether a fault is the expected one.
//! The arch keeps what is not: the probe instructions and their landing pad,
//! where the faulting instruction's address is in the saved frame, and what
//! the CPU's fault detail (x86 error code, arm64 ESR) says.

use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::fault_probe::PageFaultRecord;
use crate::arch::VirtAddr;

/// One CPU's armed fault expectation and what it caught. Atomics because
/// the fault handler (same CPU, exception context) writes it.
pub struct FaultExpectation {
    armed: AtomicBool,
    expected_start: AtomicU64,
    expected_end: AtomicU64,
    fault_recorded: AtomicBool,
    recorded_address: AtomicU64,
    /// The arch's fault detail: x86's page-fault error code, arm64's ESR.
    recorded_detail: AtomicU64,
}

impl FaultExpectation {
    /// No expectation armed.
    pub const fn new() -> Self {
        Self {
            armed: AtomicBool::new(false),
            expected_start: AtomicU64::new(0),
            expected_end: AtomicU64::new(0),
            fault_recorded: AtomicBool::new(false),
            recorded_address: AtomicU64::new(0),
            recorded_detail: AtomicU64::new(0),
        }
    }

    /// Called by the arch's fault handler on the faulting CPU: true when the
    /// fault at `fault_address`, raised by a probe access (`at_probe`), is
    /// the one this CPU expects. The first such fault is recorded with
    /// `detail`; the handler then resumes at the probe's landing pad.
    pub(crate) fn catch(&self, fault_address: u64, at_probe: bool, detail: u64) -> bool {
        if !self.armed.load(Ordering::Acquire) || !at_probe {
            return false;
        }
        let expected =
            self.expected_start.load(Ordering::Relaxed)..self.expected_end.load(Ordering::Relaxed);
        if !expected.contains(&fault_address) {
            return false;
        }
        if !self.fault_recorded.load(Ordering::Relaxed) {
            self.recorded_address
                .store(fault_address, Ordering::Relaxed);
            self.recorded_detail.store(detail, Ordering::Relaxed);
            self.fault_recorded.store(true, Ordering::Release);
        }
        true
    }
}

impl Default for FaultExpectation {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `access`, which must fault through a probe at an address in
/// `expected`; returns the first such fault.
///
/// The expectation belongs to this CPU, so the thread must not migrate
/// while it is armed: the whole call is a critical section, and `access`
/// must not sleep.
///
/// # Panics
///
/// If `access` completes without such a fault (the memory was reachable),
/// or if expectations are nested. The panic names the caller's location.
#[track_caller]
pub fn expect_page_fault(expected: Range<VirtAddr>, access: impl FnOnce()) -> PageFaultRecord {
    let guard = crate::cpu::PreemptGuard::new();
    let expectation = &crate::cpu::this_cpu(&guard).fault_expectation;
    let was_armed = expectation.armed.load(Ordering::Acquire);
    assert!(
        !was_armed,
        "expect_page_fault may not be nested: an expectation is already armed"
    );
    expectation
        .expected_start
        .store(expected.start.as_u64(), Ordering::Relaxed);
    expectation
        .expected_end
        .store(expected.end.as_u64(), Ordering::Relaxed);
    expectation.fault_recorded.store(false, Ordering::Relaxed);
    expectation.armed.store(true, Ordering::Release);

    access();

    expectation.armed.store(false, Ordering::Release);
    assert!(
        expectation.fault_recorded.load(Ordering::Acquire),
        "expected a page fault at an address in {:#x}..{:#x}, but the access completed without one",
        expected.start.as_u64(),
        expected.end.as_u64()
    );
    let record = PageFaultRecord {
        address: VirtAddr::new(expectation.recorded_address.load(Ordering::Relaxed)),
        error_code: expectation.recorded_detail.load(Ordering::Relaxed),
    };
    drop(guard);
    record
}
