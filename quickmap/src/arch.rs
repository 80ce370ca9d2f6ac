//! Architecture back ends: page-table entry encodings and local invalidation. The core
//! of quickmap never names an architecture; kernels pick the module of theirs.
//!
//! - [`x86_64`]: page-table entries, memory types through the PAT, `invlpg`;
//! - [`aarch64`]: level-3 descriptors, memory types through `MAIR_EL1`, `tlbi vale1`.
//!
//! Each builds on every target, so its encodings are tested on the host; only its
//! [`Mmu`](crate::Mmu) implementation and its instructions need its own architecture.

pub mod aarch64;
mod entry_array;
pub mod x86_64;
