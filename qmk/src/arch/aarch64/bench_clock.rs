//! The benchmark's clock: under icount the PMU's cycle counter, which QEMU
//! advances one per guest instruction under `-icount shift=0` ([`super::pmu`]);
//! otherwise the generic timer's counter, guest time for throughput.

use core::sync::atomic::{AtomicBool, Ordering};

use super::{pmu, timer};

/// Whether [`read`] reads the PMU (set by [`start`] under icount).
static COUNTS_INSTRUCTIONS: AtomicBool = AtomicBool::new(false);

/// Under icount, starts this CPU's PMU (the icount boot has one CPU) and checks
/// that its cycle counter counts exactly one per instruction; returns what the
/// clock is, for the bench's log. Without icount the generic timer needs nothing.
pub fn start(icount: bool) -> Result<Option<&'static str>, alloc::string::String> {
    if !icount {
        return Ok(None);
    }
    pmu::start_this_cpu();
    pmu::cycle_counter_counts_instructions()?;
    COUNTS_INSTRUCTIONS.store(true, Ordering::Relaxed);
    Ok(Some(
        "PMCCNTR_EL0, checked: 100000 more turns of a 4-instruction loop read 400000 \
         more on it and on INST_RETIRED",
    ))
}

/// The clock's count.
#[inline(always)]
pub fn read() -> u64 {
    if COUNTS_INSTRUCTIONS.load(Ordering::Relaxed) {
        pmu::cycles()
    } else {
        timer::read()
    }
}

/// Its rate: QEMU's `ARM_CPU_FREQ` (1 GHz) for the PMU, the timer's otherwise.
pub fn hz() -> u64 {
    if COUNTS_INSTRUCTIONS.load(Ordering::Relaxed) {
        1_000_000_000
    } else {
        timer::hz()
    }
}
