//! Fault probes: memory accesses whose fault a test can expect.
//!
//! The same contract as on x86_64 (see `arch::x86_64::fault_probe`): a test
//! arms an expectation for an address range with [`expect_page_fault`](crate::fault_expectation::expect_page_fault) and
//! touches memory only through [`probe_read_u8`]/[`probe_write_u8`], tiny
//! assembly functions whose single memory instruction sits at a known
//! address. The data-abort handler recovers a fault only when (a) the
//! faulting instruction is one of those, (b) an expectation is armed on this
//! CPU, and (c) FAR lies in the expected range; it then records the fault and
//! resumes at a landing pad that makes the probe return `Err`. Any other
//! abort stays fatal.
//!
//! The probes are leaf functions: x30 still holds the caller's return
//! address when the abort is taken, so the landing pad just returns.

use super::exceptions::{InterruptFrame, Syndrome};
use super::VirtAddr;

core::arch::global_asm!(
    r#"
    .section .text.qmk_fault_probe, "ax"
    .global qmk_probe_read_u8
qmk_probe_read_u8:              /* u64 (address: x0): the byte, or u64::MAX on a recovered fault */
qmk_probe_read_u8_access:
    ldrb w0, [x0]
    ret

    .global qmk_probe_write_u8
qmk_probe_write_u8:             /* u64 (address: x0, value: w1): 0, or u64::MAX on a recovered fault */
qmk_probe_write_u8_access:
    strb w1, [x0]
    mov x0, #0
    ret

qmk_probe_fault_landing:        /* the handler resumes here; x30 is the caller's return address */
    mov x0, #-1
    ret

    .section .rodata.qmk_fault_probe, "a"
    .balign 8
    .global qmk_probe_sites
qmk_probe_sites:
    .quad qmk_probe_read_u8_access
    .quad qmk_probe_write_u8_access
    .quad qmk_probe_fault_landing
"#
);

extern "C" {
    fn qmk_probe_read_u8(address: u64) -> u64;
    fn qmk_probe_write_u8(address: u64, value: u8) -> u64;
    /// Addresses of: the read access, the write access, the landing pad.
    static qmk_probe_sites: [u64; 3];
}

const PROBE_FAULTED: u64 = u64::MAX;

fn probe_sites() -> [u64; 3] {
    // SAFETY: `qmk_probe_sites` is an initialised, immutable table in
    // .rodata (defined above) holding three code addresses.
    unsafe { qmk_probe_sites }
}

/// The probe's access faulted and the fault was the expected one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeFaulted;

/// Reads the byte at `address`, or returns `Err` when the read faults inside
/// an armed [`expect_page_fault`](crate::fault_expectation::expect_page_fault) range. Any other fault is fatal as usual.
///
/// # Safety
///
/// 1. `address` is either unmapped, or mapped to memory whose read has no
///    side effects (RAM, not device registers).
/// 2. No `&mut` to the byte exists during the call (the read would race it).
pub unsafe fn probe_read_u8(address: VirtAddr) -> Result<u8, ProbeFaulted> {
    // SAFETY: the probe reads one byte at `address` and touches nothing else;
    // the caller guarantees that read is harmless (see # Safety). A fault is
    // either recovered by the handler (the probe then returns PROBE_FAULTED)
    // or ends the run.
    let result = unsafe { qmk_probe_read_u8(address.as_u64()) };
    match result {
        PROBE_FAULTED => Err(ProbeFaulted),
        byte => Ok(byte as u8),
    }
}

/// Writes `value` to the byte at `address`, or returns `Err` when the write
/// faults inside an armed [`expect_page_fault`](crate::fault_expectation::expect_page_fault) range.
///
/// # Safety
///
/// 1. `address` is either unmapped, or mapped to memory that nothing else
///    uses (the byte may be overwritten) and that is not a device register.
/// 2. No reference to the byte exists during the call.
pub unsafe fn probe_write_u8(address: VirtAddr, value: u8) -> Result<(), ProbeFaulted> {
    // SAFETY: the probe writes one byte at `address`, which the caller owns
    // or which is unmapped (see # Safety).
    let result = unsafe { qmk_probe_write_u8(address.as_u64(), value) };
    match result {
        PROBE_FAULTED => Err(ProbeFaulted),
        _ => Ok(()),
    }
}

/// A fault that an expectation caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFaultRecord {
    /// The faulting address (FAR_EL1).
    pub address: VirtAddr,
    /// The syndrome (ESR_EL1).
    pub error_code: u64,
}

impl PageFaultRecord {
    /// True when no valid descriptor mapped the address (a translation
    /// fault, rather than a permission or access-flag fault).
    pub fn page_was_not_present(&self) -> bool {
        Syndrome(self.error_code).is_translation_fault()
    }

    /// True when the faulting access was a write.
    pub fn was_write(&self) -> bool {
        Syndrome(self.error_code).is_write()
    }
}

/// True when `pc` is a probe's memory access.
pub fn is_probe_access(pc: u64) -> bool {
    let [read_access, write_access, _] = probe_sites();
    pc == read_access || pc == write_access
}

/// Called by the data-abort handler: if this fault is an expected probe
/// fault, records it, redirects `frame` to the landing pad and returns true.
pub(super) fn recover_expected_fault(frame: &mut InterruptFrame, fault_address: u64) -> bool {
    // The fault is handled on the CPU where it happened, which is the CPU
    // whose expectation the (pinned) prober armed.
    let expectation = &crate::cpu::this_cpu_unguarded().fault_expectation;
    if !expectation.catch(fault_address, is_probe_access(frame.elr), frame.esr) {
        return false;
    }
    let [_, _, landing_pad] = probe_sites();
    frame.elr = landing_pad;
    true
}
