//! The PMU as the benchmark's instruction counter under `-icount shift=0`.
//!
//! The generic timer (`arch::clock`) ticks QEMU's virtual time at 62.5 MHz, so
//! under icount it advances once per 16 instructions: too coarse, and not x86_64's
//! exact `rdtsc`. The PMU gives exact counts. In QEMU 7.2 (`target/arm/helper.c`):
//!
//! - event 0x08, INST_RETIRED, reads `icount_get_raw()`: the guest instructions
//!   executed; QEMU offers it only with precise icount (`instructions_supported`),
//!   and PMCEID0_EL0 bit 8 says whether it does;
//! - the cycle counter PMCCNTR_EL0 reads QEMU's virtual clock at `ARM_CPU_FREQ`
//!   (1 GHz): under `shift=0` one instruction is one nanosecond of that clock, so
//!   it too counts one per instruction, and it is 64 bits wide (PMCR_EL0.LC) where
//!   the event counter is 32.
//!
//! Both are system-register reads QEMU treats as I/O (`ARM_CP_IO`): under icount the
//! translation block ends at the read, so the count is exact at the instruction.
//! The bench's clock under icount is therefore PMCCNTR_EL0, and
//! [`cycle_counter_counts_instructions`] checks it against INST_RETIRED and against
//! a loop of known length at the start of every icount bench boot.

use core::arch::asm;

/// PMCR_EL0.E: enable the counters.
const PMCR_E: u64 = 1 << 0;
/// PMCR_EL0.C: reset the cycle counter.
const PMCR_C: u64 = 1 << 2;
/// PMCR_EL0.LC: the cycle counter overflows at 64 bits, not 32.
const PMCR_LC: u64 = 1 << 6;
/// PMCNTENSET_EL0: the cycle counter's bit.
const CYCLE_COUNTER: u64 = 1 << 31;
/// PMCNTENSET_EL0: event counter 0's bit.
const EVENT_COUNTER_0: u64 = 1 << 0;
/// The architectural event "instruction architecturally executed".
pub const INST_RETIRED: u64 = 0x08;

/// Starts this CPU's cycle counter, and event counter 0 on INST_RETIRED if the
/// PMU has that event, counting at EL1 and EL0 (the filters' reset meaning).
pub fn start_this_cpu() {
    // SAFETY: PMU registers accessed at EL1, which the kernel runs at and
    // which MDCR_EL2 (reset value; `boot` sets no trap) leaves untrapped; the
    // counters only count, nothing else depends on them.
    unsafe {
        asm!(
            "msr pmccfiltr_el0, xzr",
            "msr pmselr_el0, xzr",
            "msr pmxevtyper_el0, {event}",
            "mrs {pmcr}, pmcr_el0",
            "orr {pmcr}, {pmcr}, {set}",
            "msr pmcr_el0, {pmcr}",
            "msr pmcntenset_el0, {enable}",
            "isb",
            event = in(reg) INST_RETIRED,
            pmcr = out(reg) _,
            set = in(reg) PMCR_E | PMCR_C | PMCR_LC,
            enable = in(reg) CYCLE_COUNTER | EVENT_COUNTER_0,
            options(nostack, preserves_flags),
        );
    }
}

/// Whether the PMU counts INST_RETIRED (QEMU: only under precise icount).
pub fn has_instructions_retired() -> bool {
    let events: u64;
    // SAFETY: reads an ID-like PMU register at EL1; no side effect.
    unsafe { asm!("mrs {}, pmceid0_el0", out(reg) events, options(nomem, nostack)) };
    events & (1 << INST_RETIRED) != 0
}

/// The cycle counter (PMCCNTR_EL0): one per instruction under `-icount shift=0`.
#[inline(always)]
pub fn cycles() -> u64 {
    let count: u64;
    // SAFETY: reads a counter at EL1 (see `start_this_cpu`); no side effect.
    unsafe { asm!("isb", "mrs {}, pmccntr_el0", out(reg) count, options(nostack)) };
    count
}

/// Event counter 0 (INST_RETIRED once `start_this_cpu` ran), 32 bits.
#[inline(always)]
pub fn instructions_retired() -> u32 {
    let count: u64;
    // SAFETY: reads a counter at EL1 (see `start_this_cpu`); no side effect.
    unsafe { asm!("isb", "mrs {}, pmevcntr0_el0", out(reg) count, options(nostack)) };
    count as u32
}

/// Instructions of one iteration of [`known_loop`].
const LOOP_BODY: u64 = 4;

/// `iterations` turns of a loop of exactly [`LOOP_BODY`] instructions, between
/// two reads of each counter; returns the (cycle, INST_RETIRED) deltas.
#[inline(never)]
fn known_loop(iterations: u64) -> (u64, u64) {
    let (cycles_before, retired_before) = (cycles(), instructions_retired());
    // SAFETY: register arithmetic only.
    unsafe {
        asm!(
            "2:",
            "add {scratch}, {scratch}, #1",
            "add {scratch}, {scratch}, #2",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            n = inout(reg) iterations => _,
            scratch = out(reg) _,
            options(nomem, nostack),
        );
    }
    let (cycles_after, retired_after) = (cycles(), instructions_retired());
    (
        cycles_after - cycles_before,
        u64::from(retired_after.wrapping_sub(retired_before)),
    )
}

/// Checks that the cycle counter counts exactly one per instruction: two loops of
/// known length differ by exactly the instructions they differ by, on the cycle
/// counter and on INST_RETIRED alike. `Err` says what was measured.
pub fn cycle_counter_counts_instructions() -> Result<(), alloc::string::String> {
    const SHORT: u64 = 1_000;
    const LONG: u64 = 101_000;
    if !has_instructions_retired() {
        return Err("the PMU has no INST_RETIRED event (QEMU offers it under icount only)".into());
    }
    let short = known_loop(SHORT);
    let long = known_loop(LONG);
    let expected = (LONG - SHORT) * LOOP_BODY;
    let measured = (long.0 - short.0, long.1 - short.1);
    if measured == (expected, expected) {
        Ok(())
    } else {
        Err(alloc::format!(
            "{} more loop turns should take {expected} more instructions; the cycle \
             counter says {}, INST_RETIRED {}",
            LONG - SHORT,
            measured.0,
            measured.1
        ))
    }
}
