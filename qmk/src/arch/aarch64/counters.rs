//! Counters owned by one thread, updated without exclusives (see
//! `sched::migrate`): aarch64's forms.

/// Subtracts 1 from the `u32` at `$address` (a `*const AtomicU32`); when the
/// count was already 0 (the subtraction borrowed), runs `$on_borrow`, which
/// must not return. `ldr`, `subs`, `str`, then a branch on the carry `subs`
/// cleared: an interrupt between the load and the store is harmless because
/// a handler leaves the count as it found it (`sched::migrate`, point 2).
/// Not `nomem`: a compiler barrier.
///
/// The caller's `unsafe` block argues that `$address` is valid and that
/// only the running thread writes the counter.
macro_rules! decrement_u32_or_on_borrow {
    ($address:expr, $on_borrow:block) => {{
        let borrowed: u64;
        core::arch::asm!(
            "ldr {value:w}, [{address}]",
            "subs {value:w}, {value:w}, #1",
            "str {value:w}, [{address}]",
            "cset {borrowed}, lo",
            address = in(reg) $address,
            value = out(reg) _,
            borrowed = out(reg) borrowed,
            options(nostack),
        );
        if borrowed != 0 $on_borrow
    }};
}

pub(crate) use decrement_u32_or_on_borrow;
