//! Kernel tests of x86_64-only facilities: PAT programming and the
//! interrupt entry's register and SSE handling (`int n`). Registered with
//! `kernel_test!` like the arch-neutral ones (`crate::kernel_tests`); their
//! names start with `arch::x86_64::kernel_tests::`.

mod interrupts;
mod pat;
