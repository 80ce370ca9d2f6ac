//! Thread contexts: the saved context a new thread starts from, and the
//! switch request a thread makes of the scheduler.
//!
//! A thread asks for a switch (yield, park, exit, an owed preemption) with
//! `svc #0`, its request in x0: the exception entry saves the whole context
//! (x0–x30, SP_EL0, ELR, SPSR and the FP/SIMD registers), and the
//! scheduler's `interrupt_exit`, called by `exceptions`' dispatcher, swaps it
//! for the next thread's before `eret`. ELR of an SVC already points past
//! the `svc`, so the thread resumes after it.

use super::exceptions::{class, InterruptFrame};
use super::VirtAddr;

/// The `svc` immediate of a switch request (ESR_EL1.ISS bits 15:0).
pub const SWITCH_REQUEST_SVC: u64 = 0;

/// SPSR_EL1 of a new thread: EL1 on SP_EL0 (EL1t, M = 0b0100), IRQs and
/// SErrors unmasked; debug exceptions and FIQs (unused) masked.
const NEW_THREAD_SPSR: u64 = 0b0100 | 1 << 9 | 1 << 6;

/// Asks the scheduler for a switch: `svc #0` with `request` in x0; returns
/// when the thread is switched in again (on whichever CPU), or at once when
/// the scheduler declines.
#[inline]
pub fn request_switch(request: u64) {
    // SAFETY: `svc #0` is the kernel's switch request: the exception entry
    // saves every register and the FP/SIMD state, and this thread resumes
    // after the `svc` with all of them as they were (possibly on another
    // CPU, which Rust code cannot tell apart). No `nomem`: a compiler
    // barrier, so memory is up to date when another CPU may run the thread.
    unsafe { core::arch::asm!("svc #0", in("x0") request, options(nostack)) };
}

/// The request of a switch-request exception's saved `frame`, or `None` when
/// the frame is another exception's or an IRQ's.
#[inline]
pub fn switch_request_of(frame: &InterruptFrame) -> Option<u64> {
    let is_switch_request = frame.vector_kind().is_synchronous()
        && frame.exception_class() == class::SVC_AARCH64
        && frame.esr & 0xffff == SWITCH_REQUEST_SVC;
    is_switch_request.then_some(frame.x[0])
}

/// The saved context from which a new thread starts: `entry(argument)` on
/// the stack whose top is `stack_top` (16-byte aligned), IRQs unmasked.
pub fn new_thread_frame(
    entry: unsafe extern "C" fn(u64) -> !,
    argument: u64,
    stack_top: VirtAddr,
) -> InterruptFrame {
    assert!(
        stack_top.as_u64().is_multiple_of(16),
        "a thread's stack top must be 16-byte aligned (AAPCS64), got {:#x}",
        stack_top.as_u64()
    );
    let mut frame = InterruptFrame::default();
    frame.sp_el0 = stack_top.as_u64();
    frame.elr = entry as usize as u64;
    frame.spsr = NEW_THREAD_SPSR;
    frame.x[0] = argument;
    frame
}
