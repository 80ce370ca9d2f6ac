//! Interrupts as the kernel core sees them: masking IRQs, handlers by
//! vector, "in interrupt", and the path every IRQ and switch request takes
//! (handler, quickmap's window check, the scheduler's switch on the way out).
//!
//! A vector here is a GICv3 interrupt id below 256: SGIs 0–15 are the IPIs
//! (`ipi`), PPI 30 the tick (`timer`). The GIC's acknowledge (IAR) and end
//! (EOIR) pair up around the handler in `gic::handle_irq`, so handlers do not
//! signal the end themselves: [`end_of_interrupt`] does nothing here.

use aarch64_cpu::registers::{Readable, DAIF};

pub use super::exceptions::{FpState, InterruptFrame};
pub use super::gic::InterruptHandler;

/// Installs `handler` for interrupt id `vector`.
///
/// # Panics
///
/// If `vector` has no handler slot (`gic::set_interrupt_handler`).
pub fn set_interrupt_handler(vector: u8, handler: InterruptHandler) {
    super::gic::set_interrupt_handler(u32::from(vector), handler);
}

/// The arch-neutral "the handled interrupt is done" that x86_64's handlers
/// need (a local APIC EOI). On aarch64 the GIC's end of interrupt is written
/// by the dispatcher (`gic::handle_irq`), paired with the acknowledge it
/// read, so there is nothing left to do here.
#[inline]
pub fn end_of_interrupt() {}

/// True when this CPU takes IRQs (PSTATE.I clear).
#[inline]
pub fn interrupts_enabled() -> bool {
    DAIF.read(DAIF::I) == 0
}

/// Masks IRQs on this CPU.
#[inline]
pub fn disable_interrupts() {
    // SAFETY: sets PSTATE.I; no memory is accessed. Not `nomem`: a compiler
    // barrier, so memory accesses stay on their side of the masking.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// Unmasks IRQs on this CPU.
#[inline]
pub fn enable_interrupts() {
    // SAFETY: clears PSTATE.I; as in `disable_interrupts`.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Waits for the next interrupt, then takes it with IRQs unmasked. `wfi`
/// with IRQs masked still wakes for a pending one, so an interrupt that
/// arrives before the `wfi` is not missed (the `sti; hlt` of x86_64).
#[inline]
pub fn enable_interrupts_and_halt() {
    // SAFETY: masks IRQs, waits, unmasks: no memory is accessed; a compiler
    // barrier as in `disable_interrupts`.
    unsafe {
        core::arch::asm!(
            "msr daifset, #2",
            "wfi",
            "msr daifclr, #2",
            options(nostack, preserves_flags)
        )
    };
}

/// True while an IRQ handler (or the switch on the way out of a switch
/// request) runs on this CPU.
#[inline]
pub fn in_interrupt() -> bool {
    super::percpu::percpu_read_u32!(crate::cpu::offsets::INTERRUPT_NESTING) != 0
}

/// An IRQ or a switch request (`svc #0`), with IRQs masked: the handler (for
/// an IRQ), quickmap's check that the handler gave back every window it
/// took, then the scheduler's switch, all counted as "in interrupt".
pub(super) fn handle_interrupt(frame: &mut InterruptFrame, fp_state: &mut FpState) {
    super::percpu::percpu_increment_u32!(crate::cpu::offsets::INTERRUPT_NESTING);
    if frame.vector_kind().is_irq() {
        let cpu = crate::cpu::current_cpu_index();
        let windows_at_entry = crate::vm::quick::WindowsInUse::on(cpu);
        let intid = super::gic::handle_irq(frame);
        if let Some(intid) = intid {
            crate::vm::quick::interrupt_windows_check(intid as usize, cpu, windows_at_entry);
        }
    }
    crate::sched::interrupt_exit(frame, fp_state);
    let _ = super::percpu::percpu_decrement_u32_is_zero!(crate::cpu::offsets::INTERRUPT_NESTING);
}
