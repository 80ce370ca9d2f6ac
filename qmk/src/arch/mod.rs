//! Architecture support. The kernel core uses `crate::arch::NAME` only; each
//! architecture module defines the same names, so nothing outside this
//! directory says `cfg(target_arch)`.
//!
//! Per-CPU data (`percpu`): each arch points a per-CPU base register at this
//! CPU's `cpu::PerCpu` block (`set_percpu_base`) and defines the accessors
//! `percpu_read_u32!`, `percpu_read_u32_as_u64!`, `percpu_read_u64!`,
//! `percpu_increment_u32!`, `percpu_increment_u64!`,
//! `percpu_decrement_u32_is_zero!` and `percpu_decrement_u32_then_if_zero!`,
//! each taking a field offset (`cpu::offsets`). Their contract: the access
//! reaches the block of the CPU the caller runs on when it completes, even
//! if the caller is preemptible (a migration cannot split it), and a
//! read-modify-write is not split by an interrupt on this CPU; each is a
//! compiler barrier. x86_64 does each in one `gs:` instruction; aarch64 masks
//! IRQs around `mrs tpidr_el1` and the load/store.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use self::aarch64::*;
