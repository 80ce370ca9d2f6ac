//! Ending the run under QEMU: the `isa-debug-exit` device.
//!
//! QEMU is started with `-device isa-debug-exit,iobase=0xf4,iosize=4`; a write
//! of `v` to port 0xf4 makes QEMU exit with status `(v << 1) | 1`.

use ::x86_64::instructions::port::Port;

/// The I/O port of the `isa-debug-exit` device.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Asks QEMU to exit with status `(value << 1) | 1`. Returns only when the
/// device is missing (QEMU started without it).
pub fn request_exit(value: u32) {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is the isa-debug-exit device in the QEMU machine the
    // protocol describes; writing it has no effect on memory.
    unsafe { port.write(value) };
}
