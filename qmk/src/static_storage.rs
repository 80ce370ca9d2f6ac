//! [`StaticStorage`]: a `static` that hands out one `&'static mut` to its
//! contents, once.
//!
//! Kernel-lifetime buffers (the frame bitmap, boot-CPU stacks) are best
//! placed in `.bss`, but a `static mut` gives no guard against two owners.
//! This wrapper makes the single hand-out a checked rule instead of a comment.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// Storage for a `T` that may be claimed mutably exactly once.
#[repr(C)]
pub struct StaticStorage<T> {
    contents: UnsafeCell<T>,
    claimed: AtomicBool,
}

// SAFETY: the contents are reachable only through `claim`, which hands out
// at most one reference for the whole run; that reference can move between
// CPUs only if `T: Send`.
unsafe impl<T: Send> Sync for StaticStorage<T> {}

impl<T> StaticStorage<T> {
    /// Wraps `contents` (usually a zeroed buffer, so it lands in `.bss`).
    pub const fn new(contents: T) -> Self {
        Self {
            contents: UnsafeCell::new(contents),
            claimed: AtomicBool::new(false),
        }
    }

    /// The address of the contents, for memory the CPU uses without Rust
    /// ever dereferencing it (stacks): no reference is created.
    #[allow(
        dead_code,
        reason = "only arches whose stacks are Rust statics use it (x86_64)"
    )]
    pub const fn address(&'static self) -> *const T {
        self.contents.get().cast_const()
    }

    /// Returns the only mutable reference to the contents.
    ///
    /// # Panics
    ///
    /// If called a second time: two owners of the same buffer is the bug
    /// this type exists to catch.
    #[allow(
        clippy::mut_from_ref,
        reason = "the one-time claim flag makes this the only reference ever handed out"
    )]
    pub fn claim(&'static self, what: &str) -> &'static mut T {
        let already_claimed = self.claimed.swap(true, Ordering::AcqRel);
        assert!(
            !already_claimed,
            "static storage for {what} claimed twice: it has one owner for the whole run"
        );
        // SAFETY: the swap above lets exactly one caller past this point, so
        // this `&mut` is the only reference ever created to the contents.
        unsafe { &mut *self.contents.get() }
    }
}
