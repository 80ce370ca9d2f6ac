//! The kernel's own tests (registered with `kernel_test!`).

mod smoke;
