//! Everything qmk knows about running under QEMU: ending the run with a
//! result through the `isa-debug-exit` device.
//!
//! QEMU is started with `-device isa-debug-exit,iobase=0xf4,iosize=4`; a write
//! of `v` to port 0xf4 makes QEMU exit with status `(v << 1) | 1`. The values
//! below are the contract in `docs/kernel-protocol.md` (33 = success,
//! 35 = failure).

use x86_64::instructions::port::Port;

/// The I/O port of the `isa-debug-exit` device.
const DEBUG_EXIT_PORT: u16 = 0xf4;

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
/// If the device is missing (QEMU started without it), the CPU halts with
/// interrupts off, which the host sees as a hang/time-out, never as success.
pub fn exit(outcome: RunOutcome) -> ! {
    crate::console::flush();
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the isa-debug-exit device in the QEMU machine the
    // protocol describes; writing it has no effect on memory.
    unsafe { port.write(outcome as u32) };
    crate::arch::halt_forever()
}
