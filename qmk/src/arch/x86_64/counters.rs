//! Counters owned by one thread, updated without `lock` (see
//! `sched::migrate`): x86_64's forms.

/// Subtracts 1 from the `u32` at `$address` (a `*const AtomicU32`); when the
/// count was already 0 (the subtraction borrowed), runs `$on_borrow`, which
/// must not return. One `sub` on memory and a `jb`: the borrow is the
/// underflow test, so the count is not loaded and tested separately. Not
/// `nomem`: a compiler barrier.
///
/// The caller's `unsafe` block argues that `$address` is valid and that
/// only the running thread writes the counter.
macro_rules! decrement_u32_or_on_borrow {
    ($address:expr, $on_borrow:block) => {
        core::arch::asm!(
            "sub dword ptr [{address}], 1",
            "jb {underflow}",
            address = in(reg) $address,
            underflow = label $on_borrow,
            options(nostack),
        )
    };
}

pub(crate) use decrement_u32_or_on_borrow;
