//! Stack sizes and the per-CPU exception stacks.
//!
//! The kernel runs on SP_EL0; an exception switches to SP_EL1, this CPU's
//! exception stack (see `boot`). An exception stack holds one saved frame
//! (`exceptions::SAVED_CONTEXT_SIZE`) plus the Rust handler's frames.

/// The bootstrap CPU's boot stack (its "main" context).
pub const BOOT_STACK_SIZE: usize = 256 * 1024;
/// One CPU's exception stack.
pub const EXCEPTION_STACK_SIZE: usize = 32 * 1024;
