//! Per-CPU data through TPIDR_EL1: aarch64's form of the per-CPU accessors
//! every arch defines (see `arch`'s module documentation).
//!
//! Every CPU points TPIDR_EL1 at its own `cpu::PerCpu` block
//! ([`set_percpu_base`]). Unlike x86_64's `gs:[offset]`, aarch64 has no
//! addressing mode relative to a system register: an access is `mrs` of the
//! base, then `ldr`/`str` through it — two instructions or more, which a
//! preemption could separate. A thread preempted after its `mrs` may resume
//! on another CPU and then read or write the *first* CPU's block: a wrong
//! `current_thread`, a lost critical-section increment. So every accessor
//! masks IRQs (`msr daifset, #2`) around the whole `mrs` + `ldr` (+ `str`)
//! sequence and restores the caller's DAIF afterwards:
//!
//! 1. With IRQs masked no interrupt is taken on this CPU, so no switch (they
//!    all happen on the way out of an IRQ or SVC, and the sequence makes no
//!    SVC): the base read by `mrs` is this CPU's block when the `ldr`/`str`
//!    runs.
//! 2. Only the owning CPU writes these fields, and its own handlers cannot
//!    run in the middle (point 1), so the read-modify-write loses no update
//!    without an exclusive or LSE atomic.
//! 3. The fields are naturally aligned, so each `ldr`/`str` is single-copy
//!    atomic: other CPUs reading a field with an atomic load see the old or
//!    the new value, as with x86_64's unlocked `add`.
//! 4. Restoring DAIF (not unmasking) keeps the caller's state: an accessor
//!    called with IRQs masked returns with them masked.
//!
//! FIQs are not used by this kernel and synchronous exceptions cannot occur
//! (the block is mapped), so masking IRQs alone suffices. The cost is three
//! extra system-register instructions per access; Linux instead keeps the
//! current task in SP_EL0, which this kernel's threads run on.

use aarch64_cpu::registers::{Writeable, TPIDR_EL1};

use super::VirtAddr;

/// Points this CPU's TPIDR_EL1 at `block` (this CPU's per-CPU block).
///
/// # Safety
///
/// 1. `block` is the address of this CPU's `PerCpu`, valid for the rest of
///    the run and used by no other CPU as its own block.
/// 2. No code on this CPU relies on the previous TPIDR_EL1 value.
pub unsafe fn set_percpu_base(block: VirtAddr) {
    TPIDR_EL1.set(block.as_u64());
}

/// Reads the `u32` at `$offset` in this CPU's block.
macro_rules! percpu_read_u32 {
    ($offset:expr) => {{
        let value: u32;
        // SAFETY: TPIDR_EL1 points at this CPU's PerCpu block (set before
        // any Rust code that uses per-CPU data); `$offset` is a field offset
        // in it. IRQs are masked from `mrs` to `ldr` (module documentation,
        // point 1) and DAIF is restored as it was (point 4).
        unsafe {
            core::arch::asm!(
                "mrs {daif}, daif",
                "msr daifset, #2",
                "mrs {base}, tpidr_el1",
                "ldr {value:w}, [{base}, #{offset}]",
                "msr daif, {daif}",
                offset = const $offset,
                daif = out(reg) _,
                base = out(reg) _,
                value = out(reg) value,
                options(nostack, preserves_flags, readonly)
            )
        };
        value
    }};
}

/// Reads the `u32` at `$offset` in this CPU's block as a `u64`: the same
/// `ldr` of a `w` register, which already clears the upper half, so the
/// widening costs nothing.
macro_rules! percpu_read_u32_as_u64 {
    ($offset:expr) => {
        u64::from($crate::arch::percpu::percpu_read_u32!($offset))
    };
}

/// Reads the `u64` at `$offset` in this CPU's block.
macro_rules! percpu_read_u64 {
    ($offset:expr) => {{
        let value: u64;
        // SAFETY: as in `percpu_read_u32`.
        unsafe {
            core::arch::asm!(
                "mrs {daif}, daif",
                "msr daifset, #2",
                "mrs {base}, tpidr_el1",
                "ldr {value}, [{base}, #{offset}]",
                "msr daif, {daif}",
                offset = const $offset,
                daif = out(reg) _,
                base = out(reg) _,
                value = out(reg) value,
                options(nostack, preserves_flags, readonly)
            )
        };
        value
    }};
}

/// Adds 1 to the `u32` at `$offset` in this CPU's block, with IRQs masked
/// (so neither an interrupt nor a migration can split it). Not `nomem`: the
/// asm is a compiler barrier, so memory accesses are not moved across a
/// critical-section boundary.
macro_rules! percpu_increment_u32 {
    ($offset:expr) => {
        // SAFETY: as in `percpu_read_u32`; the field is an AtomicU32
        // written only by its own CPU, and no handler runs between the
        // `ldr` and the `str` (module documentation, point 2).
        unsafe {
            core::arch::asm!(
                "mrs {daif}, daif",
                "msr daifset, #2",
                "mrs {base}, tpidr_el1",
                "ldr {value:w}, [{base}, #{offset}]",
                "add {value:w}, {value:w}, #1",
                "str {value:w}, [{base}, #{offset}]",
                "msr daif, {daif}",
                offset = const $offset,
                daif = out(reg) _,
                base = out(reg) _,
                value = out(reg) _,
                options(nostack, preserves_flags)
            )
        }
    };
}

/// Subtracts 1 from the `u32` at `$offset` in this CPU's block; returns true
/// when the result is zero.
macro_rules! percpu_decrement_u32_is_zero {
    ($offset:expr) => {{
        let value: u32;
        // SAFETY: as in `percpu_increment_u32`.
        unsafe {
            core::arch::asm!(
                "mrs {daif}, daif",
                "msr daifset, #2",
                "mrs {base}, tpidr_el1",
                "ldr {value:w}, [{base}, #{offset}]",
                "sub {value:w}, {value:w}, #1",
                "str {value:w}, [{base}, #{offset}]",
                "msr daif, {daif}",
                offset = const $offset,
                daif = out(reg) _,
                base = out(reg) _,
                value = out(reg) value,
                options(nostack, preserves_flags)
            )
        };
        value == 0
    }};
}

/// Subtracts 1 from the `u32` at `$counter` in this CPU's block; when that
/// leaves zero, runs `$then` (after DAIF is restored). The decrement is
/// [`percpu_decrement_u32_is_zero`] and the branch one `cbnz` on its result:
/// stable Rust's `asm!` cannot both use scratch registers (outputs) and
/// branch to a label, which x86_64's form needs neither of.
macro_rules! percpu_decrement_u32_then_if_zero {
    ($counter:expr, $then:block) => {
        if $crate::arch::percpu::percpu_decrement_u32_is_zero!($counter) $then
    };
}

/// Adds 1 to the `u64` at `$offset` in this CPU's block.
macro_rules! percpu_increment_u64 {
    ($offset:expr) => {
        // SAFETY: as in `percpu_increment_u32`.
        unsafe {
            core::arch::asm!(
                "mrs {daif}, daif",
                "msr daifset, #2",
                "mrs {base}, tpidr_el1",
                "ldr {value}, [{base}, #{offset}]",
                "add {value}, {value}, #1",
                "str {value}, [{base}, #{offset}]",
                "msr daif, {daif}",
                offset = const $offset,
                daif = out(reg) _,
                base = out(reg) _,
                value = out(reg) _,
                options(nostack, preserves_flags)
            )
        }
    };
}

pub(crate) use {
    percpu_decrement_u32_is_zero, percpu_decrement_u32_then_if_zero, percpu_increment_u32,
    percpu_increment_u64, percpu_read_u32, percpu_read_u32_as_u64, percpu_read_u64,
};
