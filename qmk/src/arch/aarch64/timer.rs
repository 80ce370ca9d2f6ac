//! The generic timer: the clock (CNTPCT_EL0 at CNTFRQ_EL0; `arch::clock`)
//! and the per-CPU tick (the EL1 physical timer, re-armed on every tick by
//! the IRQ dispatcher, `gic::handle_irq`, before the tick's handler runs).
//!
//! As `arch::clock` this counter is what the benchmark reads, but it is not
//! x86_64's `rdtsc` under `-icount shift=0`: it counts CNTFRQ_EL0 ticks of
//! QEMU's virtual time (62.5 MHz on `virt`), not instructions, so the
//! bench's "instructions per pair" are counter ticks on aarch64.
//! TODO(issue 13): count instructions with the PMU (PMCCNTR_EL0 or an
//! INST_RETIRED event counter) for the bench on aarch64.

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTPCT_EL0, CNTP_CTL_EL0, CNTP_TVAL_EL0,
};

/// The EL1 physical timer's interrupt: PPI 14, interrupt id 30 (QEMU
/// `virt`'s device tree lists it as the non-secure physical timer).
pub const TIMER_INTERRUPT_ID: u32 = 30;
/// The tick's vector (its interrupt id) as the kernel core names it.
pub const TIMER_VECTOR: u8 = TIMER_INTERRUPT_ID as u8;

/// The tick period every CPU's timer runs at (0: not started).
static PERIOD_US: AtomicU64 = AtomicU64::new(0);

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

/// Starts this CPU's tick, one interrupt every `period_us` microseconds
/// (the timer fires `period_us` from now and is re-armed from each tick).
///
/// # Panics
///
/// If another CPU started its tick with a different period.
pub fn start_periodic(period_us: u64) {
    let previous = PERIOD_US.swap(period_us, Ordering::Relaxed);
    assert!(
        previous == 0 || previous == period_us,
        "every CPU's tick has the same period: {period_us} us asked, {previous} us running"
    );
    CNTP_TVAL_EL0.set(period_ticks(period_us));
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
}

/// Re-arms this CPU's timer from a tick: the level-triggered interrupt
/// stays asserted until the compare value moves into the future.
pub(super) fn rearm_tick() {
    CNTP_TVAL_EL0.set(period_ticks(PERIOD_US.load(Ordering::Relaxed)));
}
