//! Everything qmk knows about running under QEMU: ending the run with a
//! result (`arch::qemu_exit`: the `isa-debug-exit` device on x86_64,
//! semihosting on aarch64).
//!
//! QEMU exits with status `(v << 1) | 1` for the value `v` below: the
//! contract in `docs/kernel-protocol.md` (33 = success, 35 = failure).

/// How a boot ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RunOutcome {
    /// QEMU exits with status 33.
    Success = 0x10,
    /// QEMU exits with status 35.
    Failure = 0x11,
}

/// Ends the run: QEMU exits with the status that encodes `outcome`.
///
/// If the exit device is missing (QEMU started without it), the CPU halts
/// with interrupts off, which the host sees as a hang/time-out, never as
/// success.
pub fn exit(outcome: RunOutcome) -> ! {
    crate::console::flush();
    crate::arch::qemu_exit::request_exit(outcome as u32);
    crate::arch::halt_forever()
}
