//! Per-CPU data through the GS segment base: x86_64's form of the per-CPU
//! accessors every arch defines (see `arch`'s module documentation).
//!
//! Every CPU points its `IA32_GS_BASE` at its own [`crate::cpu::PerCpu`]
//! block, so `gs:[offset]` addresses this CPU's copy of a field with one
//! instruction. Single-instruction read-modify-writes (`add gs:[o], 1`) need
//! no `lock` prefix: only the owning CPU writes these fields, and an
//! interrupt cannot split one instruction. Ring 0 only, so no `swapgs`.

use ::x86_64::registers::model_specific::GsBase;
use ::x86_64::VirtAddr;

/// Points this CPU's GS base at `block` (this CPU's per-CPU block).
///
/// # Safety
///
/// 1. `block` is the address of this CPU's `PerCpu`, valid for the rest of
///    the run and used by no other CPU as its own block.
/// 2. No code on this CPU relies on the previous GS base.
pub unsafe fn set_percpu_base(block: VirtAddr) {
    GsBase::write(block);
}

/// Reads the `u32` at `gs:[$offset]`.
macro_rules! percpu_read_u32 {
    ($offset:expr) => {{
        let value: u32;
        // SAFETY: GS points at this CPU's PerCpu block (set before any Rust
        // code that uses per-CPU data); `$offset` is a field offset in it.
        unsafe {
            core::arch::asm!("mov {value:e}, gs:[{offset}]", offset = const $offset,
                value = out(reg) value, options(nostack, preserves_flags, readonly))
        };
        value
    }};
}

/// Reads the `u32` at `gs:[$offset]` as a `u64`: a 32-bit load clears the
/// upper half of its register, which the compiler cannot see through `asm!`,
/// so declaring the result 64-bit spares the zero extension it would add.
macro_rules! percpu_read_u32_as_u64 {
    ($offset:expr) => {{
        let value: u64;
        // SAFETY: as in `percpu_read_u32`; writing a 32-bit register zeroes bits
        // 32..64, so `value` is the field's value.
        unsafe {
            core::arch::asm!("mov {value:e}, gs:[{offset}]", offset = const $offset,
                value = out(reg) value, options(nostack, preserves_flags, readonly))
        };
        value
    }};
}

/// Reads the `u64` at `gs:[$offset]`.
macro_rules! percpu_read_u64 {
    ($offset:expr) => {{
        let value: u64;
        // SAFETY: as in `percpu_read_u32`.
        unsafe {
            core::arch::asm!("mov {value}, gs:[{offset}]", offset = const $offset,
                value = out(reg) value, options(nostack, preserves_flags, readonly))
        };
        value
    }};
}

/// Adds 1 to the `u32` at `gs:[$offset]` (one instruction, so an interrupt
/// cannot split it). Not `nomem`: the asm is a compiler barrier, so memory
/// accesses are not moved across a critical-section boundary.
macro_rules! percpu_increment_u32 {
    ($offset:expr) => {
        // SAFETY: as in `percpu_read_u32`; the field is an AtomicU32 written
        // only by its own CPU.
        unsafe { core::arch::asm!("add dword ptr gs:[{offset}], 1", offset = const $offset, options(nostack)) }
    };
}

/// Subtracts 1 from the `u32` at `gs:[$offset]`; returns true when the
/// result is zero (one instruction plus `setz`).
macro_rules! percpu_decrement_u32_is_zero {
    ($offset:expr) => {{
        let reached_zero: u8;
        // SAFETY: as in `percpu_increment_u32`.
        unsafe {
            core::arch::asm!("sub dword ptr gs:[{offset}], 1", "setz {zero}",
                offset = const $offset, zero = out(reg_byte) reached_zero, options(nostack))
        };
        reached_zero != 0
    }};
}

/// Subtracts 1 from the `u32` at `gs:[$counter]`; when that leaves zero, runs
/// `$then`. Two instructions when `$then` does not run (`sub`, `jnz`),
/// branching on the flags `sub` sets (no `setz` materialised and tested
/// again). Not `nomem`: a compiler barrier, like [`percpu_increment_u32`].
macro_rules! percpu_decrement_u32_then_if_zero {
    ($counter:expr, $then:block) => {
        // SAFETY: as in `percpu_read_u32`; the counter is an AtomicU32 written
        // only by its own CPU, one instruction, so an interrupt cannot split
        // the decrement. `$then` runs as ordinary Rust code after the asm,
        // with the stack as the asm found it.
        unsafe {
            core::arch::asm!(
                "sub dword ptr gs:[{counter}], 1",
                "jnz {done}",
                "jmp {then}",
                counter = const $counter,
                // Every exit is a label and the asm never falls through, so
                // the fast path branches straight to the code after it (a
                // fall-through exit would cost a `jmp` there).
                done = label {},
                then = label $then,
                options(nostack, noreturn)
            )
        }
    };
}

/// Adds 1 to the `u64` at `gs:[$offset]`.
macro_rules! percpu_increment_u64 {
    ($offset:expr) => {
        // SAFETY: as in `percpu_increment_u32`.
        unsafe { core::arch::asm!("add qword ptr gs:[{offset}], 1", offset = const $offset, options(nostack)) }
    };
}

pub(crate) use {
    percpu_decrement_u32_is_zero, percpu_decrement_u32_then_if_zero, percpu_increment_u32,
    percpu_increment_u64, percpu_read_u32, percpu_read_u32_as_u64, percpu_read_u64,
};
