//! Architecture back ends: page-table entry encodings and local invalidation. The core
//! of quickmap never names an architecture; kernels pick the module of theirs.

pub mod x86_64;
