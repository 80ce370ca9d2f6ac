//! Fault probes: memory accesses whose page fault a test can expect.
//!
//! To prove that an address is unreachable (a removed quickmap window, the
//! guard page after one, high memory outside the direct map), a test must
//! touch it and survive the fault. [`expect_page_fault`](crate::fault_expectation::expect_page_fault) arms an expectation
//! for an address range and runs the test's access; the access goes through
//! [`probe_read_u8`]/[`probe_write_u8`], tiny assembly functions whose single
//! memory instruction sits at a known address. When the page-fault handler
//! sees a fault (a) on one of those instructions, (b) while an expectation is
//! armed, (c) at an address inside the expected range, it records the fault
//! and resumes at a landing pad that makes the probe return `Err`. Any other
//! fault — including a probe fault outside the range — stays fatal, so a
//! probe can never hide a bug elsewhere.
//!
//! Resuming only at a probe's landing pad is what makes recovery sound: the
//! probe functions hold no state, touch no stack, and their callers see an
//! ordinary return.
//!
//! The expectation (`crate::fault_expectation`, shared by every arch) is
//! per CPU (a field of `cpu::PerCpu`): a fault is handled on the CPU where it
//! happened, and several CPUs may probe at once. `expect_page_fault`
//! therefore holds off preemption (a critical section) from arming to
//! disarming, so the thread cannot migrate away from its expectation; the
//! access closure must not sleep.

use ::x86_64::VirtAddr;

use super::interrupts::InterruptFrame;

core::arch::global_asm!(
    r#"
    .section .text.fault_probe, "ax"
    .global qmk_probe_read_u8
qmk_probe_read_u8:              /* u64 (addr: rdi): byte, or u64::MAX on a recovered fault */
qmk_probe_read_u8_access:
    movzbl (%rdi), %eax
    ret

    .global qmk_probe_write_u8
qmk_probe_write_u8:             /* u64 (addr: rdi, value: sil): 0, or u64::MAX on a recovered fault */
qmk_probe_write_u8_access:
    movb %sil, (%rdi)
    xorl %eax, %eax
    ret

qmk_probe_fault_landing:        /* the handler resumes here; rsp still points at the return address */
    movq $-1, %rax
    ret

    .section .rodata.fault_probe, "a"
    .balign 8
    .global qmk_probe_sites
qmk_probe_sites:
    .quad qmk_probe_read_u8_access
    .quad qmk_probe_write_u8_access
    .quad qmk_probe_fault_landing
"#,
    options(att_syntax)
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

/// A page fault that an expectation caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFaultRecord {
    /// The faulting address (CR2).
    pub address: VirtAddr,
    /// The CPU's page-fault error code.
    pub error_code: u64,
}

impl PageFaultRecord {
    /// True when the page was not present (rather than a protection violation).
    pub fn page_was_not_present(&self) -> bool {
        self.error_code & 1 == 0
    }

    /// True when the faulting access was a write.
    pub fn was_write(&self) -> bool {
        self.error_code & (1 << 1) != 0
    }
}

/// True when `rip` is a probe's memory access.
pub fn is_probe_access(rip: u64) -> bool {
    let [read_access, write_access, _] = probe_sites();
    rip == read_access || rip == write_access
}

/// Called by the page-fault handler: if this fault is an expected probe
/// fault, records it, redirects `frame` to the landing pad and returns true.
pub(super) fn recover_expected_fault(frame: &mut InterruptFrame, fault_address: u64) -> bool {
    // The fault is handled on the CPU where it happened, which is the CPU
    // whose expectation the (pinned) prober armed.
    let expectation = &crate::cpu::this_cpu_unguarded().fault_expectation;
    if !expectation.catch(fault_address, is_probe_access(frame.rip), frame.error_code) {
        return false;
    }
    let [_, _, landing_pad] = probe_sites();
    frame.rip = landing_pad;
    true
}
