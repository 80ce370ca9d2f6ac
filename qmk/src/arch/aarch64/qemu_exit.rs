//! Ending the run under QEMU with an exit status: Arm semihosting.
//!
//! On x86_64 the `isa-debug-exit` device makes QEMU exit with `(v << 1) | 1`.
//! The `virt` machine has no such device, and PSCI `SYSTEM_OFF` always makes
//! QEMU exit with status 0, which cannot tell a failed run from a passed
//! one. Semihosting's `SYS_EXIT` (QEMU started with `-semihosting`) carries
//! an exit code, so the aarch64 kernel exits with exactly the statuses the
//! x86_64 kernel produces (33 success, 35 failure) and xtask judges both
//! alike. Without `-semihosting` the `hlt #0xf000` below is an undefined
//! instruction: the exception path recognises it and halts (a time-out for
//! the host, never a false success).

use core::sync::atomic::{AtomicBool, Ordering};

/// Semihosting operation `SYS_EXIT`.
const SYS_EXIT: u64 = 0x18;
/// `SYS_EXIT` reason "the application exited": QEMU exits with the subcode.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

/// Set once an exit was attempted, so a missing `-semihosting` (an
/// exception at the `hlt`) cannot loop back into another exit attempt.
static EXIT_ATTEMPTED: AtomicBool = AtomicBool::new(false);

core::arch::global_asm!(
    r#"
    .section .text.qmk_semihosting, "ax"
    .global qmk_semihosting_call
qmk_semihosting_call:           /* x0: operation, x1: parameter block */
qmk_semihosting_trap:
    hlt #0xf000
    ret

    .section .rodata.qmk_semihosting, "a"
    .balign 8
    .global qmk_semihosting_trap_address
qmk_semihosting_trap_address:
    .quad qmk_semihosting_trap
"#
);

extern "C" {
    fn qmk_semihosting_call(operation: u64, parameters: *const u64) -> u64;
    static qmk_semihosting_trap_address: u64;
}

/// Makes QEMU exit with status `(value << 1) | 1`, as x86_64's
/// `isa-debug-exit` would for `value`. Returns only when that failed.
pub fn request_exit(value: u32) {
    if EXIT_ATTEMPTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let block = [ADP_STOPPED_APPLICATION_EXIT, (u64::from(value) << 1) | 1];
    // SAFETY: semihosting SYS_EXIT reads the two-word block at x1 and ends
    // QEMU; the block lives on this stack for the call. Without semihosting
    // the trap is an exception that `is_semihosting_trap` recognises.
    unsafe { qmk_semihosting_call(SYS_EXIT, block.as_ptr()) };
}

/// True when `pc` is the semihosting trap instruction (an exception there
/// means QEMU was started without `-semihosting`).
pub fn is_semihosting_trap(pc: u64) -> bool {
    // SAFETY: an initialised, immutable word in .rodata (defined above).
    pc == unsafe { qmk_semihosting_trap_address }
}
