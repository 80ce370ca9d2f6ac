//! The periodic tick: the local APIC timer (calibrated against the TSC in
//! `apic::calibrate_timer`).

/// The tick's interrupt vector.
pub const TIMER_VECTOR: u8 = super::apic::TIMER_VECTOR;

/// Starts this CPU's tick, one interrupt every `period_us` microseconds.
pub fn start_periodic(period_us: u64) {
    super::apic::start_periodic_timer(period_us);
}
