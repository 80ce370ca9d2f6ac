//! Architecture support. The kernel core uses `crate::arch::NAME` only; each
//! architecture module defines the same names, so nothing outside this
//! directory says `cfg(target_arch)`.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use self::aarch64::*;
