//! The generic timer: the clock (CNTPCT_EL0 at CNTFRQ_EL0) and the
//! per-CPU tick (the EL1 physical timer, re-armed on every tick).

use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTPCT_EL0, CNTP_CTL_EL0, CNTP_TVAL_EL0,
};

/// The EL1 physical timer's interrupt: PPI 14, interrupt id 30 (QEMU
/// `virt`'s device tree lists it as the non-secure physical timer).
pub const TIMER_INTERRUPT_ID: u32 = 30;

/// The counter's ticks since boot.
pub fn read() -> u64 {
    CNTPCT_EL0.get()
}

/// The counter's frequency.
pub fn hz() -> u64 {
    CNTFRQ_EL0.get()
}

/// Spins for `microseconds`.
pub fn delay_us(microseconds: u64) {
    let end = read() + microseconds * hz() / 1_000_000;
    while read() < end {
        core::hint::spin_loop();
    }
}

/// Counter ticks in one timer period of `period_us`.
fn period_ticks(period_us: u64) -> u64 {
    (period_us * hz() / 1_000_000).max(1)
}

/// Arms this CPU's timer to fire `period_us` from now (and again from each
/// tick, with [`rearm`]).
pub fn start(period_us: u64) {
    CNTP_TVAL_EL0.set(period_ticks(period_us));
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
}

/// Re-arms the timer from a tick: the level-triggered interrupt stays
/// asserted until the compare value moves into the future.
pub fn rearm(period_us: u64) {
    CNTP_TVAL_EL0.set(period_ticks(period_us));
}
