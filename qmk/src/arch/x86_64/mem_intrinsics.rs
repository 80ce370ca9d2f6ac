//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp`.
//!
//! The compiler emits calls to these for copies and comparisons, and the
//! prebuilt `compiler_builtins` of the host target (which the x86_64 kernel
//! is built for) does not export them (it expects libc); aarch64-unknown-none's
//! does, so aarch64 has no such module. Copy and fill use `rep movsb`/`rep stosb`: fast on every
//! CPU with ERMSB and, unlike a Rust byte loop, impossible for LLVM to
//! "optimise" back into a call to the very function being defined.

use core::arch::asm;

/// Copies `count` bytes from `source` to `destination`; the ranges must not overlap.
///
/// # Safety
///
/// 1. `source` is valid for reads and `destination` for writes of `count` bytes.
/// 2. The two ranges do not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(destination: *mut u8, source: *const u8, count: usize) -> *mut u8 {
    // SAFETY: `rep movsb` copies `count` bytes upwards from rsi to rdi; the
    // ranges are valid and disjoint (caller's contract). The direction flag
    // is clear: the ABI requires it at every call boundary.
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") count => _,
            inout("rdi") destination => _,
            inout("rsi") source => _,
            options(nostack, preserves_flags)
        );
    }
    destination
}

/// Copies `count` bytes from `source` to `destination`; the ranges may overlap.
///
/// # Safety
///
/// 1. `source` is valid for reads and `destination` for writes of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(destination: *mut u8, source: *const u8, count: usize) -> *mut u8 {
    let copies_upwards_safely = (destination as usize).wrapping_sub(source as usize) >= count;
    if copies_upwards_safely {
        // SAFETY: the destination does not start inside the source range, so
        // an upward copy never reads a byte it already overwrote.
        return unsafe { memcpy(destination, source, count) };
    }
    // The destination starts inside the source: copy downwards, from the
    // last byte, with the direction flag set for the copy only.
    // SAFETY: rdi/rsi point at the last byte of each valid range; `std`
    // makes `rep movsb` walk downwards and `cld` restores the ABI state.
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") count => _,
            inout("rdi") destination.wrapping_add(count).wrapping_sub(1) => _,
            inout("rsi") source.wrapping_add(count).wrapping_sub(1) => _,
            options(nostack)
        );
    }
    destination
}

/// Fills `count` bytes at `destination` with the low byte of `value`.
///
/// # Safety
///
/// 1. `destination` is valid for writes of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(destination: *mut u8, value: i32, count: usize) -> *mut u8 {
    // SAFETY: `rep stosb` stores al into `count` bytes upwards from rdi; the
    // range is writable (caller's contract); the direction flag is clear.
    unsafe {
        asm!(
            "rep stosb",
            inout("rcx") count => _,
            inout("rdi") destination => _,
            in("al") value as u8,
            options(nostack, preserves_flags)
        );
    }
    destination
}

/// Compares `count` bytes; returns <0, 0 or >0 like C's `memcmp`.
///
/// # Safety
///
/// 1. `left` and `right` are valid for reads of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(left: *const u8, right: *const u8, count: usize) -> i32 {
    let mut index = 0;
    while index < count {
        // SAFETY: index < count and both ranges are readable (caller's contract).
        let (a, b) = unsafe { (left.add(index).read(), right.add(index).read()) };
        if a != b {
            return i32::from(a) - i32::from(b);
        }
        index += 1;
    }
    0
}

/// Returns 0 when the `count` bytes are equal, non-zero otherwise.
///
/// # Safety
///
/// 1. `left` and `right` are valid for reads of `count` bytes.
#[no_mangle]
pub unsafe extern "C" fn bcmp(left: *const u8, right: *const u8, count: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(left, right, count) }
}
