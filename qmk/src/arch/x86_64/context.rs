//! Thread contexts: the saved context a new thread starts from, and the
//! switch request a thread makes of the scheduler.
//!
//! A thread asks for a switch (yield, park, exit, an owed preemption) with
//! the software interrupt [`SWITCH_REQUEST_VECTOR`], its request in `rdi`:
//! the entry code saves the whole context (registers and SSE state), and the
//! scheduler's `interrupt_exit` swaps it for the next thread's before
//! `iretq`. The interrupt's handler does nothing; `interrupts` installs it.

use ::x86_64::instructions::segmentation::{Segment, CS, SS};

use super::interrupts::InterruptFrame;
use super::VirtAddr;

/// The software interrupt a thread raises to ask for a switch.
pub const SWITCH_REQUEST_VECTOR: u8 = 0x81;

/// Asks the scheduler for a switch: raises [`SWITCH_REQUEST_VECTOR`] with
/// `request` in `rdi`; returns when the thread is switched in again (on
/// whichever CPU), or at once when the scheduler declines.
#[inline]
pub fn request_switch(request: u64) {
    // SAFETY: vector 0x81 is the kernel's switch-request interrupt: its
    // handler saves every register and the SSE state, and this thread
    // resumes after `int` with all of them as they were (possibly on another
    // CPU, which Rust code cannot tell apart). The asm has no memory operands
    // but is a compiler barrier (no `nomem`): memory is up to date when
    // another CPU may run the thread.
    unsafe { core::arch::asm!("int 0x81", in("rdi") request) };
}

/// The request of a switch-request interrupt's saved `frame`, or `None` when
/// the frame is another interrupt's.
#[inline]
pub fn switch_request_of(frame: &InterruptFrame) -> Option<u64> {
    (frame.vector == u64::from(SWITCH_REQUEST_VECTOR)).then_some(frame.rdi)
}

/// The saved context from which a new thread starts: `entry(argument)` on
/// the stack whose top is `stack_top` (16-byte aligned), interrupts on.
pub fn new_thread_frame(
    entry: unsafe extern "C" fn(u64) -> !,
    argument: u64,
    stack_top: VirtAddr,
) -> InterruptFrame {
    InterruptFrame {
        rip: entry as usize as u64,
        rdi: argument,
        // As if `entry` had been called: rsp + 8 is 16-byte aligned.
        rsp: stack_top.as_u64() - 8,
        // Interrupts on (IF, bit 9) plus the always-one bit 1.
        rflags: 0x202,
        cs: u64::from(CS::get_reg().0),
        ss: u64::from(SS::get_reg().0),
        ..InterruptFrame::default()
    }
}
